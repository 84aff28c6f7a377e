/*! Footprint tracker | README.md "JS tracker" */
// Source of the tracker. `make install` minifies it (terser, tracking/build_tracker.mjs)
// into build/static/, which is what Footprint serves; the size budget is 6 KB gzipped.
//
// Three ways in, one API:
//   the Footprint snippet   window.footprint = [...queued calls], script data-key / data-api
//   Carma's tag             <script id="carma-tracking" data-token data-url data-debug>, carma.tracking.*
//   Tracktor's snippet      window.tio = [...queued calls], script src .../tracker/<write key>.js
//                           (or Tracktor's own path, .../scripts/<write key>.js)
(function (window, document) {
  'use strict';
  try { main(); } catch (e) { /* never break the host page */ }

  function main() {
    var VERSION = '1.0.0';
    var MAX_QUEUE = 500; // events kept while they cannot be sent; the oldest go first
    var MAX_BATCH = 50;
    var MAX_BATCH_BYTES = 48000; // keepalive requests may have 64 KiB in flight in all
    var CONFIG_TTL = 300000; // ms a fetched site config is used before fetching again
    var YEAR = 31536000;
    var ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    var LETTER_ID = 'fp_id';
    var LETTER_SIGNATURE = 'fp_sig';

    var location = window.location;
    var navigator = window.navigator;
    var history = window.history;
    var existing = window.footprint;
    if (existing && existing.loaded) return;

    var debug = false;
    function log() {
      if (debug) try { console.log.apply(console, ['[footprint]'].concat([].slice.call(arguments))); } catch (e) { /* no console */ }
    }
    function safe(fn) {
      return function () {
        try { return fn.apply(this, arguments); } catch (e) { log('error', e); }
      };
    }
    function noop() {}
    function parse(text) {
      try { return JSON.parse(text); } catch (e) { return null; }
    }
    function extend(target, source) {
      if (source && typeof source == 'object') for (var k in source) if (Object.prototype.hasOwnProperty.call(source, k)) target[k] = source[k];
      return target;
    }
    // A copy the page cannot change after the call (a cart's products array, say).
    function copy(value) {
      return value && typeof value == 'object' ? parse(JSON.stringify(value)) || {} : {};
    }
    // Bytes as sent (UTF-8): limits count bytes, and a Cyrillic character is two.
    function bytes(text) {
      return window.TextEncoder ? new TextEncoder().encode(text).length : unescape(encodeURIComponent(text)).length;
    }
    // Ids the server refuses as junk (DESIGN "People and identity").
    var JUNK_IDS = /^(null|undefined|anonymous|guest|0|-1|\[object object\]|nan|none|true|false)?$/i;
    function now() { return new Date().getTime(); }
    function iso() { return new Date().toISOString(); }
    function random(length) {
      var bytes = new Uint8Array(length), out = '', i, crypto = window.crypto;
      if (crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
      else for (i = 0; i < length; i++) bytes[i] = Math.random() * 256;
      for (i = 0; i < length; i++) out += ALPHABET.charAt(bytes[i] % 62);
      return out;
    }

    // --- the script tag: write key, API origin, debug ---------------------------------
    var script = document.currentScript ||
      document.querySelector('script#carma-tracking,script[data-key],script[src*="footprint"],script[src*="/tracker/"]');
    function data(name) { return script ? script.getAttribute('data-' + name) : null; }
    var src = (script && script.src) || '';
    var keyInPath = /\/(?:tracker|scripts)\/([^\/?#]+)\.js/.exec(src);
    var writeKey = data('key') || data('token') || (keyInPath && decodeURIComponent(keyInPath[1]));
    var carmaUrl = data('url'); // Carma's collector unless it points at a Footprint /v1
    var apiBase = (data('api') || (/\/v1\/?$/.test(carmaUrl || '') ? carmaUrl : '') || src.replace(/^((?:https?:)?\/\/[^\/]+).*$/, '$1'))
      .replace(/\/+$/, '').replace(/\/v1$/, '');
    debug = data('debug') == 'true' || /[?&]fp_debug=1/.test(location.search);

    // --- storage: localStorage, first-party cookies when it is unavailable ----------------
    var store;
    try { store = window.localStorage; store.setItem('fp_t', '1'); store.removeItem('fp_t'); } catch (e) { store = null; }
    function readCookie(name) {
      var match = document.cookie.match('(?:^|; )' + name + '=([^;]*)');
      return match ? decodeURIComponent(match[1]) : null;
    }
    function writeCookie(name, value, seconds) {
      document.cookie = name + '=' + (value == null ? '' : encodeURIComponent(value)) + ';path=/;max-age=' +
        (value == null ? 0 : seconds) + ';samesite=lax' + (location.protocol == 'https:' ? ';secure' : '');
    }
    function get(name) {
      var value = null;
      if (store) try { value = store.getItem('fp_' + name); } catch (e) { /* blocked */ }
      return value != null ? value : readCookie('fp_' + name);
    }
    // `large` values (queues, config) never go to a cookie: they stay in memory instead.
    function set(name, value, large) {
      try {
        if (store) {
          if (value == null) store.removeItem('fp_' + name); else store.setItem('fp_' + name, value);
          return;
        }
      } catch (e) { /* full or blocked: fall through */ }
      if (!large || value == null) writeCookie('fp_' + name, value, YEAR);
    }

    // --- state -----------------------------------------------------------------------
    var consent = get('consent'); // '1' given, '0' refused, null not asked
    var needConsent = data('consent') == 'required';
    var anonymousId = get('aid');
    var userId = get('uid');
    var signature = get('sig');
    var profileId = get('pid');
    var generation = 0; // bumped when the person on this browser changes
    var timeout = 1200; // session timeout in seconds, from the site config
    var timeoutKnown = false; // the config (fetched or cached) has said it
    var pageRules = [];
    var clickRules = [];
    var doNotTrack = false;
    var ready = false; // the site config is known: sending may start
    // Queues belong to one write key (two sites may share an origin).
    var QUEUE = 'q' + String(writeKey).slice(-8);
    var HELD = 'held' + String(writeKey).slice(-8);
    var queue = stored(QUEUE); // not yet accepted by the server
    var held = stored(HELD); // waiting for consent
    var sending = false;
    var failures = 0;
    var timer = 0;
    var lastPage = null;

    function stored(name) {
      var value = parse(get(name));
      return value && value.push ? value : [];
    }
    function newAnonymousId() {
      anonymousId = 'a-' + random(22);
      set('aid', anonymousId);
    }
    function forget() {
      userId = signature = profileId = null;
      set('uid'); set('sig'); set('pid');
      generation++;
    }
    function stop(why) {
      // Refused consent or do-not-track: nothing is kept or sent.
      log(why + ': nothing is sent or stored');
      queue = [];
      held = [];
      forget();
      anonymousId = null;
      set('aid'); set(QUEUE); set(HELD); set('ses'); writeCookie('fp_ses');
    }
    function blocked() { return consent == '0' || doNotTrack; }

    function session() {
      var raw = readCookie('fp_ses') || get('ses');
      var parts = (raw || '').split('.');
      var id = parts[0];
      var at = now();
      // Before the site's config is known (the page view the snippet queued), the
      // timeout the session was written with stands in for it.
      var limit = timeoutKnown ? timeout : +parts[2] || timeout;
      if (!id || !(at - parts[1] <= limit * 1000)) {
        id = 's-' + random(22);
        log('new session', id);
      }
      raw = id + '.' + at + '.' + limit;
      writeCookie('fp_ses', raw, limit);
      set('ses', raw, true);
      return id;
    }

    function pageProperties() {
      return { url: location.href, path: location.pathname, search: location.search, title: document.title, referrer: document.referrer };
    }
    function campaign() {
      var found = null, names = { source: 'source', medium: 'medium', campaign: 'name', term: 'term', content: 'content' };
      for (var k in names) {
        var match = new RegExp('[?&]utm_' + k + '=([^&#]*)').exec(location.search);
        if (match) try { (found = found || {})[names[k]] = decodeURIComponent(match[1].replace(/\+/g, ' ')); } catch (e) { /* bad escape */ }
      }
      return found;
    }
    function context() {
      var c = {
        page: pageProperties(),
        userAgent: navigator.userAgent,
        locale: navigator.language,
        library: { name: 'footprint.js', version: VERSION },
        screen: { width: window.screen.width, height: window.screen.height }
      };
      var utm = campaign();
      if (utm) c.campaign = utm;
      return c;
    }

    function send(type, fields) {
      if (blocked()) return log('not sent (' + (doNotTrack ? 'do not track' : 'no consent') + ')', type);
      if (!anonymousId) newAnonymousId();
      var m = { type: type, messageId: 'fp-' + random(22), timestamp: iso(), anonymousId: anonymousId, sessionId: session(), context: context() };
      if (userId) { m.userId = userId; if (signature) m.signature = signature; }
      if (profileId) m.profileId = profileId;
      extend(m, fields);
      if (bytes(JSON.stringify(m)) > 32000) return log('event too large (32 KB at most): not sent', m);
      var waiting = needConsent && consent != '1';
      var list = waiting ? held : queue;
      list.push(m);
      if (list.length > MAX_QUEUE) {
        var dropped = list.shift();
        log('queue full (' + MAX_QUEUE + '): dropped the oldest event', dropped.type, dropped.event || '');
      }
      if (waiting) {
        set(HELD, JSON.stringify(held), true);
        log('held until consent', m);
      } else {
        persist();
        schedule(100);
      }
    }

    // --- delivery ----------------------------------------------------------------------
    function persist() { set(QUEUE, queue.length ? JSON.stringify(queue) : null, true); }
    function schedule(delay) {
      if (!timer) timer = setTimeout(safe(function () { timer = 0; flush(); }), delay);
    }
    function retrySoon() {
      clearTimeout(timer);
      timer = 0;
      flush();
    }
    function takeBatch(list) {
      var batch = [], size = 0;
      for (var i = 0; i < list.length && batch.length < MAX_BATCH; i++) {
        size += bytes(JSON.stringify(list[i]));
        if (batch.length && size > MAX_BATCH_BYTES) break;
        batch.push(list[i]);
      }
      return batch;
    }
    function body(batch) {
      return JSON.stringify({ writeKey: writeKey, sentAt: iso(), batch: batch });
    }
    function remove(batch) {
      queue = queue.filter(function (m) { return batch.indexOf(m) < 0; });
      persist();
    }

    var inFlight = [];
    function flush() {
      if (!ready || sending || !queue.length || !writeKey || blocked() || !window.fetch) return;
      var batch = takeBatch(queue), url = apiBase + '/v1/batch', mine = generation;
      sending = true;
      inFlight = batch;
      log('send', batch.length, 'events to', url, batch);
      window.fetch(url, { method: 'POST', body: body(batch), keepalive: true, credentials: 'omit', headers: { 'Content-Type': 'text/plain' } })
        .then(function (response) {
          var wait = +response.headers.get('Retry-After') || 0;
          return response.json().then(null, noop).then(function (answer) { done(batch, response.status, answer, mine, null, wait); });
        }, function (error) { done(batch, 0, null, mine, error); })
        .then(null, function (e) { log('error', e); });
    }

    function done(batch, status, answer, mine, error, retryAfter) {
      sending = false;
      inFlight = [];
      var code = answer && answer.code;
      if (status >= 200 && status < 300) {
        failures = 0;
        log('sent', batch.length, 'events:', status, answer);
        var ids = answer && answer.profile_ids;
        // Only a batch wholly of the person on this browser now names them: events sent
        // before a reset() or a sign-in as someone else name the one before.
        var current = batch.every(function (m) { return m.anonymousId == anonymousId && (m.userId || null) == userId; });
        if (ids && ids.length && mine == generation && current) {
          profileId = String(ids[ids.length - 1]);
          set('pid', profileId);
        }
        remove(batch);
        if (queue.length) schedule(0);
      } else if (status == 401 && (code == 'bad_signature' || code == 'unsigned')) {
        // A bad or missing identity signature would refuse every later batch too: go on
        // anonymously, without the identity the server refused.
        log('the server refused the identity (' + code + '); continuing anonymously', answer);
        forget();
        batch.forEach(function (m) { delete m.userId; delete m.signature; delete m.profileId; });
        queue = queue.filter(function (m) {
          return !(batch.indexOf(m) >= 0 && m.type == 'identify' && !Object.keys(m.traits || {}).length);
        });
        persist();
        schedule(0);
      } else if (status >= 400 && status < 500 && status != 408 && status != 429) {
        log('the server refused', batch.length, 'events (not retried):', status, answer);
        remove(batch);
        if (queue.length) schedule(0);
      } else {
        failures++;
        var delay = Math.min(1000 * Math.pow(2, failures - 1), 300000) * (0.75 + Math.random() / 2);
        delay = Math.max(delay, Math.min(retryAfter || 0, 3600) * 1000); // 429 or 503: as the server asks
        clearTimeout(timer); // a call made meanwhile must not send before the backoff
        log('send failed (' + (status || error) + '); ' + queue.length + ' events kept, retry in ' + Math.round(delay / 1000) + ' s');
        timer = setTimeout(safe(function () { timer = 0; flush(); }), delay);
      }
    }

    // The page is going away: hand what is left to the browser. When the server answered
    // a moment ago the beacon is trusted and the events are forgotten; otherwise they stay
    // stored and the next page sends them again (the server drops repeats by messageId).
    function leaving() {
      if (!ready || !queue.length || blocked() || !navigator.sendBeacon) return persist();
      var rest = queue.filter(function (m) { return inFlight.indexOf(m) < 0; });
      var sent = [];
      while (rest.length) {
        var batch = takeBatch(rest);
        rest = rest.slice(batch.length);
        var ok = navigator.sendBeacon(apiBase + '/v1/batch', new Blob([body(batch)], { type: 'text/plain' }));
        log('beacon', batch.length, 'events', ok ? 'queued' : 'refused', batch);
        if (ok) sent = sent.concat(batch);
      }
      if (!failures) remove(sent); else persist();
    }

    // --- site config and auto events ---------------------------------------------------
    function applyConfig(config) {
      timeout = config.sessionTimeout || timeout;
      timeoutKnown = !!config.sessionTimeout;
      pageRules = [].concat(config.pageRules || []);
      clickRules = [].concat(config.clickRules || []);
      doNotTrack = !!config.respectDoNotTrack && (navigator.doNotTrack == '1' || window.doNotTrack == '1' || navigator.globalPrivacyControl === true);
    }
    function start() {
      if (ready) return;
      ready = true;
      if (doNotTrack) return stop('do not track');
      checkPage();
      flush();
    }
    function loadConfig() {
      var cached = parse(get('cfg'));
      var fresh = cached && cached.k == writeKey && now() - cached.t < CONFIG_TTL && now() >= cached.t;
      if (cached && cached.k == writeKey) applyConfig(cached.c);
      if (fresh) return start();
      if (!window.fetch) return start();
      window.fetch(apiBase + '/v1/tracker-config/' + encodeURIComponent(writeKey), { credentials: 'omit' })
        .then(function (response) {
          if (!response.ok) throw new Error('tracker config: HTTP ' + response.status);
          return response.json();
        })
        .then(function (config) {
          log('site config', config);
          set('cfg', JSON.stringify({ k: writeKey, t: now(), c: config }), true);
          applyConfig(config);
          start();
        })
        .then(null, function (e) {
          log('no site config (' + e + '); using ' + (cached ? 'the cached one' : 'defaults'));
          start();
        });
    }

    function glob(pattern, text) {
      var decoded = text;
      try { decoded = decodeURI(text); } catch (e) { /* a stray % */ }
      var re = new RegExp('^' + pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$');
      // The address comes percent-encoded (/caf%C3%A9); rules are written either way.
      return re.test(text) || re.test(decoded);
    }
    function checkPage() {
      var path = location.pathname + location.search;
      if (!ready || path == lastPage) return;
      lastPage = path;
      pageRules.forEach(function (rule) {
        var p = String(rule.match);
        var text = /^https?:/.test(p) ? location.href : p.indexOf('?') >= 0 ? path : location.pathname;
        if (glob(p, text)) {
          log('page rule', p);
          send('track', { event: rule.event, properties: { url: location.href, path: location.pathname, rule: p } });
        }
      });
    }
    function onClick(event) {
      var target = event.target;
      clickRules.forEach(function (rule) {
        var element;
        try { element = target && target.closest && target.closest(rule.match); } catch (e) { return log('bad selector', rule.match); }
        if (!element) return;
        log('click rule', rule.match);
        var properties = { selector: rule.match, text: (element.innerText || element.textContent || '').trim().slice(0, 100) };
        if (element.href) properties.href = element.href;
        if (element.id) properties.id = element.id;
        send('track', { event: rule.event, properties: properties });
      });
    }

    // --- the API -----------------------------------------------------------------------
    var api = {};
    function expose(name, fn, quiet) {
      api[name] = function () {
        try {
          if (!quiet) log(name, [].slice.call(arguments));
          return fn.apply(api, arguments);
        } catch (e) { log('error in ' + name, e); }
      };
    }
    function identify(id, sig, traits) {
      if (id == null || typeof id == 'object' || JUNK_IDS.test(String(id).trim())) return log('identify needs a real id, not', id);
      if (blocked()) return log('identify: nothing is kept or sent (' + (doNotTrack ? 'do not track' : 'no consent') + ')');
      if (sig && typeof sig == 'object') { traits = sig; sig = null; }
      id = String(id);
      sig = sig ? String(sig) : null;
      if (id == userId && sig == signature && !traits) return log('already identified as', id);
      if (userId && id != userId) forget(); // another person on this browser: no merge
      userId = id;
      signature = sig;
      set('uid', id);
      set('sig', sig);
      send('identify', { traits: copy(traits) });
    }
    function track(name, properties) {
      if (!name) return log('track needs an event name');
      send('track', { event: String(name), properties: copy(properties) });
    }
    expose('identify', identify);
    expose('track', track);
    expose('reset', function () {
      forget();
      writeCookie('fp_ses');
      set('ses');
      if (!blocked()) newAnonymousId();
    });
    expose('setProperties', function (properties) { send('identify', { traits: copy(properties) }); });
    expose('page', function (properties) {
      if (typeof properties == 'string') properties = { name: properties };
      send('page', { properties: extend(pageProperties(), copy(properties)) });
    });
    expose('group', function (companyId, traits) {
      if (companyId == null || companyId === '') return log('group needs a company id');
      send('group', { groupId: String(companyId), traits: copy(traits) });
    });
    expose('alias', function (id, sig) {
      if (id == null || typeof id == 'object' || JUNK_IDS.test(String(id).trim())) return log('alias needs a real id, not', id);
      if (blocked()) return log('alias: nothing is kept or sent');
      send('alias', { previousId: userId || anonymousId, userId: String(id), signature: sig || undefined });
      userId = String(id);
      signature = sig || null;
      set('uid', userId);
      set('sig', signature);
    });
    // Tracktor's messenger widget is not part of Footprint: its settings are ignored.
    expose('setMessengerConfig', noop);
    expose('setCart', function (cart) { track('set-cart', cart); });
    expose('cancelCart', function (cart) { track('cancel-cart', cart); });
    expose('purchaseCart', function (cart) { track('purchase-cart', cart); });
    expose('consent', function (given) {
      consent = given ? '1' : '0';
      set('consent', consent);
      if (!given) return stop('consent refused');
      if (!anonymousId) newAnonymousId();
      if (held.length) log('consent given: sending', held.length, 'held events');
      queue = queue.concat(held);
      held = [];
      set(HELD);
      persist();
      flush();
    });
    // Loymax's events, under the Segment e-commerce names (README "JS tracker").
    var commerce = {
      productView: ['Product Viewed', 'category_id', 'product_id'],
      categoryView: ['Product List Viewed', 'category_id'],
      sectionView: ['Section Viewed', 'section'],
      addToCart: ['Product Added', 'category_id', 'product_id'],
      removeFromCart: ['Product Removed', 'product_id'],
      clearCart: ['Cart Cleared'],
      checkoutStarted: ['Checkout Started'],
      checkoutCompleted: ['Order Completed', 'order_id']
    };
    Object.keys(commerce).forEach(function (name) {
      var spec = commerce[name];
      expose(name, function () {
        var properties = {};
        for (var i = 1; i < spec.length; i++) properties[spec[i]] = arguments[i - 1];
        track(spec[0], extend(properties, arguments[spec.length - 1]));
      });
    });
    expose('login', function (id, sig) { identify(id, sig); track('Signed In'); });
    expose('signup', function (id, sig) { identify(id, sig); track('Signed Up'); });
    expose('flush', retrySoon, true);
    expose('anonymousId', function () { return anonymousId; }, true);
    expose('profileId', function () { return profileId || null; }, true);
    expose('push', function (call) {
      var method = call && api[call[0]];
      if (typeof method == 'function' && call[0] != 'push') method.apply(api, [].slice.call(call, 1));
      else log('unknown call', call);
    }, true);
    api.loaded = true;
    api.version = VERSION;

    // --- start -------------------------------------------------------------------------
    if (!writeKey) log('no write key: add data-key (or data-token) to the script tag');
    if (consent != '0' && !anonymousId) newAnonymousId();

    // Calls queued by the snippets before this script loaded.
    var pending = [];
    function adopt(stub) {
      if (!stub || typeof stub.length != 'number') return;
      pending = pending.concat([].slice.call(stub), [].slice.call(stub.q || []));
      stub.push = api.push; // stubs that kept a reference now call straight through
    }
    adopt(existing);
    window.footprint = api;
    var tio = window.tio;
    if (tio && !tio.loaded) {
      // Tracktor's library reports every page it is on (Visited Site, popular pages),
      // as Footprint's snippet does with its page() call.
      pending.push(['page']);
      adopt(tio);
      if (window.YS === tio) window.YS = api;
      window.tio = api;
    }
    if (script && script.id == 'carma-tracking') (window.carma = window.carma || {}).tracking = api;

    // Letter-click identification: a signed person id in the landing URL.
    try {
      var url = new URL(location.href);
      var letterId = url.searchParams.get(LETTER_ID);
      if (letterId != null) {
        var letterSignature = url.searchParams.get(LETTER_SIGNATURE);
        url.searchParams['delete'](LETTER_ID);
        url.searchParams['delete'](LETTER_SIGNATURE);
        history.replaceState(history.state, '', url.pathname + url.search + url.hash);
        log('letter click: identifying', letterId);
        identify(letterId, letterSignature);
      }
    } catch (e) { log('error', e); }

    // The cached site config first: the calls queued before this script loaded (its
    // page view) then start or continue the session with the site's own timeout.
    var cachedConfig = parse(get('cfg'));
    if (cachedConfig && cachedConfig.k == writeKey && cachedConfig.c) applyConfig(cachedConfig.c);
    pending.forEach(api.push);

    function listen(target, type, fn, capture) { target.addEventListener(type, safe(fn), capture); }
    ['pushState', 'replaceState'].forEach(function (name) {
      var original = history[name];
      if (typeof original == 'function') history[name] = function () {
        var result = original.apply(this, arguments);
        try { checkPage(); } catch (e) { log('error', e); }
        return result;
      };
    });
    listen(window, 'popstate', checkPage);
    listen(document, 'click', onClick, true);
    listen(window, 'pagehide', leaving);
    listen(document, 'visibilitychange', function () { if (document.visibilityState == 'hidden') leaving(); });
    listen(window, 'online', retrySoon);
    if (writeKey) loadConfig();
  }
})(window, document);
