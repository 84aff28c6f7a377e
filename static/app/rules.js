// Settings page: add and remove auto-event rules, and let the browser check selectors.
(function () {
  var body = document.getElementById('rules-body');
  var total = document.getElementById('id_rules-TOTAL_FORMS');
  var template = document.getElementById('rule-template');
  var empty = document.getElementById('rules-empty');
  if (!body || !total || !template) return;

  function refresh() {
    empty.hidden = body.querySelectorAll('tr.rule-row:not([hidden])').length > 0;
  }

  function setup(row) {
    var kind = row.querySelector('select[name$="-kind"]');
    var match = row.querySelector('input[name$="-match"]');
    var error = row.querySelector('.selector-error');
    function check() {
      var click = kind.value === 'click';
      var value = match.value.trim();
      var message = '';
      match.placeholder = click ? 'button.buy' : '/pricing*';
      if (click && value) {
        try {
          document.createDocumentFragment().querySelector(value);
        } catch (e) {
          message = 'This browser cannot read "' + value + '" as a CSS selector.';
        }
      }
      match.setCustomValidity(message);
      error.textContent = message;
      error.hidden = !message;
    }
    kind.addEventListener('change', check);
    match.addEventListener('input', check);
    check();
  }

  document.getElementById('add-rule').addEventListener('click', function () {
    var index = Number(total.value);
    body.insertAdjacentHTML('beforeend', template.innerHTML.replace(/__prefix__/g, String(index)));
    total.value = String(index + 1);
    var row = body.lastElementChild;
    setup(row);
    refresh();
    row.querySelector('input[name$="-match"]').focus();
  });

  body.addEventListener('click', function (event) {
    var button = event.target.closest('.remove-rule');
    if (!button) return;
    var row = button.closest('tr');
    row.querySelector('input[name$="-DELETE"]').checked = true;
    row.querySelector('input[name$="-match"]').setCustomValidity('');
    row.hidden = true;
    refresh();
  });

  Array.prototype.forEach.call(body.querySelectorAll('tr.rule-row'), setup);
})();
