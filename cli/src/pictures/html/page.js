// Shows the call, leak or finding under the pointer (or clicked: it stays) from the data
// embedded in the page, and links the tables to the timeline. No network, no library.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('shmtrace-data').textContent);
  var detail = document.getElementById('detail');
  var svg = document.getElementById('timeline');
  var pinned = null;

  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function fields(rows) {
    var dl = node('dl');
    rows.forEach(function (r) {
      if (r[1] === undefined || r[1] === null || r[1] === '' ||
          (Array.isArray(r[1]) && !r[1].length)) return;
      dl.appendChild(node('dt', null, r[0]));
      var dd = node('dd');
      if (Array.isArray(r[1])) {
        r[1].forEach(function (line) { dd.appendChild(node('div', null, line)); });
      } else {
        dd.textContent = String(r[1]);
      }
      dl.appendChild(dd);
    });
    return dl;
  }

  function callParts(id) {
    var e = data.events[id];
    if (!e) return [];
    var result = e.returned ? ' = ' + (e.ret === null ? 'null' : e.ret) : ' (never returned)';
    var head = node('h3', null, e.call + result + (e.errno ? ' ' + e.errno : ''));
    var args = Object.keys(e.args).map(function (k) {
      var v = e.args[k];
      return k + ' = ' + (typeof v === 'string' ? v : JSON.stringify(v));
    });
    return [head, fields([
      ['process', e.pid + (e.tid !== e.pid ? ', thread ' + e.tid : '')],
      ['at', e.at],
      ['arguments', args],
      ['result', e.returned ? JSON.stringify(e.ret) : 'never returned'],
      ['errno', e.errno],
      ['duration', e.dur],
      ['site', e.site],
      ['stack', e.stack.map(function (f) { return 'called from ' + f; })],
      ['stands for', e.n > 1 ? e.n + ' calls in this pixel column' : null]
    ])];
  }

  function select(attr, value) {
    svg.querySelectorAll('.selected').forEach(function (n) { n.classList.remove('selected'); });
    if (value === null || value === undefined) return null;
    var found = svg.querySelector('[' + attr + '="' + value + '"]');
    if (found) found.classList.add('selected');
    return found;
  }

  function show(parts) {
    detail.replaceChildren.apply(detail, parts);
  }

  function showEvent(id) {
    show(callParts(id));
    return select('data-ev', id);
  }

  function showLeak(i) {
    var l = data.leaks[i];
    show([node('h3', null, 'leak: ' + l.what), fields([
      ['process', l.pid], ['site', l.site],
      ['stack', l.stack.map(function (f) { return 'called from ' + f; })]
    ])].concat(l.ev !== null ? callParts(l.ev) : []));
    document.querySelectorAll('tr.chosen').forEach(function (r) { r.classList.remove('chosen'); });
    var row = document.getElementById('leak-' + i);
    if (row) row.classList.add('chosen');
    return select('data-leak', i);
  }

  function showFinding(i) {
    var f = data.findings[i];
    show([node('h3', null, f.code + ' ' + f.name + ' (' + f.severity + ')'), fields([
      ['function', f.fn], ['site', f.site], ['times', f.count],
      ['processes', f.pids.join(', ')], ['explanation', f.message]
    ])].concat(f.events.length ? callParts(f.events[0]) : []));
    return select('data-finding', i);
  }

  function target(n) {
    var leak = n.closest('[data-leak]');
    if (leak) return function () { return showLeak(+leak.dataset.leak); };
    var finding = n.closest('[data-finding]');
    if (finding) return function () { return showFinding(+finding.dataset.finding); };
    var ev = n.closest('[data-ev]');
    if (ev) return function () { return showEvent(+ev.dataset.ev); };
    return null;
  }

  svg.addEventListener('mouseover', function (e) {
    var t = target(e.target);
    if (t) t();
  });
  svg.addEventListener('mouseleave', function () {
    if (pinned) pinned();
  });
  document.addEventListener('click', function (e) {
    // Links to a lane just go there.
    if (e.target.closest('a[href^="#lane-"]')) return;
    var row = e.target.closest('[data-fn-row]');
    if (row) {
      e.preventDefault();
      var fn = row.dataset.fnRow;
      var on = !row.classList.contains('chosen');
      row.classList.toggle('chosen', on);
      svg.querySelectorAll('.ev[data-fn="' + fn + '"]').forEach(function (n) {
        n.classList.toggle('marked', on);
      });
      svg.scrollIntoView({ block: 'nearest' });
      return;
    }
    var t = target(e.target);
    if (!t) return;
    e.preventDefault();
    pinned = t;
    var shown = t();
    if (shown && !svg.contains(e.target)) {
      shown.scrollIntoView({ block: 'center', inline: 'center' });
    }
  });

  var first = data.leaks.length ? function () { return showLeak(0); } : null;
  if (first) { pinned = first; first(); }
  document.body.dataset.ready = 'true';
  document.body.dataset.events = String(data.events.length);
})();
