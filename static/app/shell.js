// The page shell: the phone menu's button, the keyboard's place across htmx swaps, and
// what the Live page says to screen readers.
(function () {
  var toggle = document.getElementById('nav-toggle');
  var nav = document.getElementById('mainnav');
  if (toggle && nav) {
    var open = function () { return toggle.getAttribute('aria-expanded') === 'true'; };
    toggle.addEventListener('click', function () {
      toggle.setAttribute('aria-expanded', String(!open()));
    });
    // Escape closes the menu from its button or its links, and the focus goes back to
    // the button (not lost with the links it was on).
    document.addEventListener('keydown', function (event) {
      if (event.key !== 'Escape' || !open()) return;
      if (document.activeElement !== toggle && !nav.contains(document.activeElement)) return;
      toggle.setAttribute('aria-expanded', 'false');
      toggle.focus();
    });
  }

  // htmx swaps: keep the keyboard's place. htmx puts the focus back on an element with
  // the id the focused one had (pager and sort links have ids); when there is none, the
  // focus fell to the top of the page, and Tab started over from the top bar. It goes to
  // the new content instead: a results region (tabindex -1) itself, or the first control
  // of what replaced the target (the timeline's first older event).
  var place = null;
  document.body.addEventListener('htmx:beforeRequest', function (event) {
    var target = event.detail.target;
    place = target.contains(document.activeElement) || target === document.activeElement
      ? {target: target, id: target.id, before: target.previousElementSibling, parent: target.parentNode}
      : null;
  });
  document.body.addEventListener('htmx:afterSettle', function () {
    var was = place;
    place = null;
    if (!was || (document.activeElement && document.activeElement !== document.body)) return;
    var next = document.body.contains(was.target) ? was.target : was.id && document.getElementById(was.id);
    if (!next && was.parent.isConnected) {
      next = was.before ? was.before.nextElementSibling : was.parent.firstElementChild;
    }
    if (next && !next.hasAttribute('tabindex')) {
      next = next.querySelector('a[href], button:not([disabled]), summary, input, select');
    }
    if (next) next.focus();
  });

  // Live events: say how many events arrived with each update, and their types. The
  // feed itself is not a live region: it is replaced whole, table and all.
  var announcer = document.getElementById('live-announcer');
  if (announcer) {
    document.body.addEventListener('htmx:afterSettle', function () {
      var rows = document.querySelectorAll('#live-feed tr.is-new');
      if (!rows.length) return;
      var types = Array.prototype.slice.call(rows, 0, 3).map(function (row) {
        return row.querySelector('.event-type').textContent;
      });
      var message = (rows.length === 1 ? '1 new event: ' : rows.length + ' new events: ') + types.join(', ')
        + (rows.length > 3 ? ' and more' : '');
      // Emptied first, so the same words twice in a row are read out twice.
      announcer.textContent = '';
      window.setTimeout(function () { announcer.textContent = message; }, 100);
    });
  }
})();
