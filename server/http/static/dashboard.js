// satlab live dashboard. One Server-Sent Events stream (/api/events, the
// same events and replay as WatchMetrics, read with fetch so that it can
// carry an API key) feeds every view; Chart.js draws.
'use strict';

(function () {
  const MAX_POINTS = 4000;  // per series; older points are thinned 2:1
  const PALETTE = ['#2f6fde', '#e4572e', '#1f9d55', '#9b51e0', '#c47f00',
                   '#17a2b8', '#d63384', '#6c757d', '#20c997', '#795548'];

  // name -> network state; id -> experiment state.
  const networks = new Map();
  const experiments = new Map();
  let selected = null;  // {kind: 'network'|'experiment', key}
  let lastSequence = 0;
  let eventsSeen = 0;
  let droppedSeen = 0;
  let renderPending = false;
  let listDirty = true;

  const $ = (id) => document.getElementById(id);
  const num = (v) => (v === undefined || v === null ? 0 : Number(v));
  const color = (i) => PALETTE[i % PALETTE.length];

  function fmt(v, digits = 4) {
    if (v === undefined || v === null || Number.isNaN(v)) return '—';
    if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
    return Number(v.toPrecision(digits)).toString();
  }

  // ---------- state ----------

  function series() { return []; }

  function thin(arr) {
    if (arr.length <= MAX_POINTS) return;
    const kept = arr.filter((_, i) => i % 2 === 0 || i === arr.length - 1);
    arr.length = 0;
    Array.prototype.push.apply(arr, kept);
  }

  function network(name) {
    let n = networks.get(name);
    if (!n) {
      n = {name, id: name.replace(/^networks\//, ''), loss: series(),
           attenuation: series(), accuracy: series(), saturation: [],
           gradients: [], last: null, lastTime: 0, rate: 0, steps: 0,
           samples: 0, firstTime: 0, firstStep: 0};
      networks.set(name, n);
      listDirty = true;
    }
    return n;
  }

  function onStep(ev) {
    const n = network(ev.network);
    const r = ev.step;
    const step = num(r.step);
    const layers = (r.saturation && r.saturation.layers) || [];
    n.loss.push({x: step, y: num(r.loss)});
    n.attenuation.push({x: step, y: num(r.saturation && r.saturation.output_attenuation)});
    n.accuracy.push({x: step, y: num(r.accuracy)});
    layers.forEach((l, i) => {
      if (!n.saturation[i]) { n.saturation[i] = series(); n.gradients[i] = series(); }
      n.saturation[i].push({x: step, y: num(l.saturated_fraction)});
      const g = num(l.weight_gradient_norm);
      n.gradients[i].push({x: step, y: g > 0 ? g : null});
    });
    [n.loss, n.attenuation, n.accuracy, ...n.saturation, ...n.gradients].forEach(thin);
    const t = Date.parse(ev.time) || Date.now();
    if (!n.firstTime) { n.firstTime = t; n.firstStep = step; }
    if (t > n.firstTime) n.rate = (step - n.firstStep) / ((t - n.firstTime) / 1000);
    n.lastTime = t;
    n.steps += 1;
    n.samples += num(r.batch_size);
    n.last = {step, loss: num(r.loss), accuracy: num(r.accuracy),
              attenuation: num(r.saturation && r.saturation.output_attenuation),
              diverged: !!r.diverged, layers};
    listDirty = true;
    if (isSelected('network', n.name)) scheduleRender();
  }

  function onDeleted(ev) {
    networks.delete(ev.network);
    listDirty = true;
    if (isSelected('network', ev.network)) selected = null;
    scheduleRender();
  }

  function onExperiment(p) {
    const id = p.experiment_id || '(experiment)';
    let e = experiments.get(id);
    if (!e) {
      e = {id, name: p.display_name || id, variants: new Map(), done: 0,
           total: 0, summary: null};
      experiments.set(id, e);
    }
    e.done = num(p.epochs_done);
    e.total = num(p.epochs_total);
    if (p.epoch) {
      const m = p.epoch;
      const index = num(m.variant);
      let v = e.variants.get(index);
      if (!v) {
        v = {index, label: m.label || ('variant ' + index), loss: series(),
             attenuation: series(), accuracy: series(), saturation: series()};
        e.variants.set(index, v);
      }
      const epoch = num(m.epoch);
      const layers = (m.saturation && m.saturation.layers) || [];
      v.loss.push({x: epoch, y: num(m.loss)});
      v.attenuation.push({x: epoch, y: num(m.saturation && m.saturation.output_attenuation)});
      v.accuracy.push({x: epoch, y: num(m.accuracy)});
      const out = layers[layers.length - 1];
      v.saturation.push({x: epoch, y: out ? num(out.saturated_fraction) : 0});
    }
    if (p.summary) e.summary = p.summary;
    listDirty = true;
    if (isSelected('experiment', id)) scheduleRender();
  }

  function onMessage(msg) {
    const ev = msg.event;
    if (!ev) return;
    const seq = num(ev.sequence);
    if (seq <= lastSequence) return;  // already seen (replay overlap)
    lastSequence = seq;
    eventsSeen += 1;
    droppedSeen += num(msg.dropped_events);
    if (ev.step) onStep(ev);
    else if (ev.network_deleted) onDeleted(ev);
    else if (ev.experiment) onExperiment(ev.experiment);
    if (!selected) autoSelect();
    scheduleRender();
  }

  // ---------- connection ----------

  // The stream is read with fetch rather than EventSource so that it can
  // carry an API key (`Authorization: Bearer`), which EventSource cannot
  // send: a server with --dashboard_access=key answers 401 without one, and
  // the page then asks for the key (kept in this tab's sessionStorage only).
  const KEY_ITEM = 'satlab-api-key';

  function setStatus(text, kind) {
    const status = $('connection');
    status.textContent = text;
    status.className = 'pill pill-' + kind;
  }

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_ITEM);
    return key ? {Authorization: 'Bearer ' + key} : {};
  }

  function askForKey(message) {
    setStatus('key needed', 'bad');
    $('auth-message').textContent = message;
    $('auth').hidden = false;
    $('auth-key').focus();
  }

  // Server-Sent Events framing: events end with a blank line; `data:` lines
  // carry the JSON, lines starting with `:` are keepalive comments.
  function dispatchFrames(buffer) {
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split('\n').filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, '')).join('\n');
      if (data) {
        try { onMessage(JSON.parse(data)); } catch (e) { console.error(e); }
      }
    }
    return buffer;
  }

  async function connect() {
    let response;
    try {
      response = await fetch('/api/events?start_step=0', {headers: authHeaders(), cache: 'no-store'});
    } catch (e) {
      return reconnect();
    }
    if (response.status === 401 || response.status === 403) {
      const had = sessionStorage.getItem(KEY_ITEM) !== null;
      sessionStorage.removeItem(KEY_ITEM);
      askForKey(had ? 'That key was not accepted.' : 'This dashboard needs an API key.');
      return;
    }
    if (!response.ok || !response.body) return reconnect();
    $('auth').hidden = true;
    setStatus('live', 'live');
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer = dispatchFrames(buffer + decoder.decode(value, {stream: true}));
      }
    } catch (e) {
      console.warn('event stream ended', e);
    }
    reconnect();
  }

  function reconnect() {
    setStatus('reconnecting', 'bad');
    // A restarted server numbers events from 1 again: start over.
    setTimeout(() => {
      networks.clear(); experiments.clear(); lastSequence = 0;
      listDirty = true; connect();
    }, 2000);
  }

  $('auth').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('auth-key').value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_ITEM, key);
    $('auth-key').value = '';
    $('auth').hidden = true;
    setStatus('connecting', 'wait');
    connect();
  });

  // ---------- selection ----------

  function isSelected(kind, key) {
    return selected !== null && selected.kind === kind && selected.key === key;
  }

  function select(kind, key) {
    selected = {kind, key};
    history.replaceState(null, '', '#' + kind + '=' + encodeURIComponent(key));
    listDirty = true;
    rebuildCharts();
    scheduleRender();
  }

  function autoSelect() {
    const hash = decodeURIComponent(location.hash.slice(1));
    const m = /^(network|experiment)=(.+)$/.exec(hash);
    if (m && (m[1] === 'network' ? networks.has(m[2]) : experiments.has(m[2]))) {
      select(m[1], m[2]);
    } else if (!m && networks.size > 0) {
      select('network', networks.keys().next().value);
    } else if (!m && experiments.size > 0) {
      select('experiment', experiments.keys().next().value);
    }
  }

  // ---------- charts ----------

  const charts = {};

  function lineChart(canvasId, xTitle, yTitle, yType, extra) {
    const old = charts[canvasId];
    if (old) old.destroy();
    const chart = new Chart($(canvasId), {
      type: 'line',
      data: {datasets: []},
      options: Object.assign({
        animation: false,
        parsing: false,
        normalized: true,
        spanGaps: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: {mode: 'nearest', axis: 'x', intersect: false},
        elements: {point: {radius: 0, hitRadius: 6}, line: {borderWidth: 1.8, tension: 0}},
        scales: {
          x: {type: 'linear', title: {display: true, text: xTitle},
              ticks: {maxTicksLimit: 8}, grid: {color: '#eef0f4'}},
          y: Object.assign({type: yType || 'linear', title: {display: true, text: yTitle},
                            grid: {color: '#eef0f4'}}, (extra && extra.y) || {}),
        },
        plugins: {
          legend: {display: true, position: 'top', align: 'end',
                   labels: {boxWidth: 12, boxHeight: 2}},
          tooltip: {callbacks: {label: (c) => c.dataset.label + ': ' + fmt(c.parsed.y)}},
        },
      }, (extra && extra.options) || {}),
    });
    charts[canvasId] = chart;
    return chart;
  }

  function dataset(label, data, i) {
    return {label, data, borderColor: color(i), backgroundColor: color(i)};
  }

  function rebuildCharts() {
    if (!selected) return;
    if (selected.kind === 'network') {
      lineChart('chart-loss', 'step', 'loss', $('loss-log').checked ? 'logarithmic' : 'linear');
      lineChart('chart-attenuation', 'step', '‖δ‖ / ‖a − y‖', 'linear', {y: {min: 0}});
      lineChart('chart-saturation', 'step', 'saturated fraction', 'linear', {y: {min: 0, max: 1}});
      lineChart('chart-gradients', 'step', '‖∂C/∂W‖', 'logarithmic');
    } else {
      lineChart('chart-exp-loss', 'epoch', 'loss', 'linear');
      lineChart('chart-exp-attenuation', 'epoch', '‖δ‖ / ‖a − y‖', 'linear', {y: {min: 0}});
      lineChart('chart-exp-accuracy', 'epoch', 'accuracy', 'linear', {y: {min: 0, max: 1}});
      lineChart('chart-exp-saturation', 'epoch', 'saturated fraction', 'linear', {y: {min: 0, max: 1}});
    }
  }

  function setDatasets(chart, sets) {
    // Keep dataset objects (and hidden state) when only the data grew.
    const same = chart.data.datasets.length === sets.length &&
        chart.data.datasets.every((d, i) => d.label === sets[i].label);
    if (same) {
      chart.data.datasets.forEach((d, i) => { d.data = sets[i].data; });
    } else {
      chart.data.datasets = sets;
    }
    chart.update('none');
  }

  function layerLabel(i, count) {
    return i === count - 1 ? 'layer ' + i + ' (output)' : 'layer ' + i;
  }

  function renderNetwork(n) {
    $('network-title').textContent = n.name;
    const badge = $('network-badge');
    const last = n.last || {};
    if (last.diverged) { badge.textContent = 'diverged'; badge.className = 'pill pill-bad'; }
    else if (Date.now() - n.lastTime < 5000) { badge.textContent = 'training'; badge.className = 'pill pill-live'; }
    else { badge.textContent = 'idle'; badge.className = 'pill'; }
    const layers = last.layers || [];
    const out = layers[layers.length - 1];
    const tiles = [
      ['step', fmt(last.step, 8)],
      ['loss', fmt(last.loss)],
      ['accuracy', last.accuracy === undefined ? '—' : (100 * last.accuracy).toFixed(1) + ' %'],
      ['output attenuation', fmt(last.attenuation, 3)],
      ['output saturated', out ? (100 * num(out.saturated_fraction)).toFixed(1) + ' %' : '—'],
      ['steps / s', fmt(n.rate, 3)],
    ];
    $('network-tiles').innerHTML = tiles.map(([l, v]) =>
        '<div class="tile"><div class="label">' + l + '</div><div class="value">' + v + '</div></div>').join('');
    setDatasets(charts['chart-loss'], [dataset('loss', n.loss, 0)]);
    setDatasets(charts['chart-attenuation'], [dataset('output attenuation', n.attenuation, 1)]);
    const count = n.saturation.length;
    setDatasets(charts['chart-saturation'], n.saturation.map((s, i) => dataset(layerLabel(i, count), s, i)));
    setDatasets(charts['chart-gradients'], n.gradients.map((s, i) => dataset(layerLabel(i, count), s, i)));
    $('chart-loss').dataset.points = String(n.loss.length);
  }

  function renderExperiment(e) {
    $('experiment-title').textContent = e.name;
    const badge = $('experiment-badge');
    badge.textContent = e.summary ? 'finished' : 'running';
    badge.className = e.summary ? 'pill' : 'pill pill-live';
    $('experiment-progress').style.width = (e.total ? 100 * e.done / e.total : 0) + '%';
    const variants = [...e.variants.values()].sort((a, b) => a.index - b.index);
    const sets = (key) => variants.map((v) => dataset(v.label, v[key], v.index));
    setDatasets(charts['chart-exp-loss'], sets('loss'));
    setDatasets(charts['chart-exp-attenuation'], sets('attenuation'));
    setDatasets(charts['chart-exp-accuracy'], sets('accuracy'));
    setDatasets(charts['chart-exp-saturation'], sets('saturation'));
    const card = $('experiment-summary-card');
    card.hidden = !e.summary;
    if (e.summary) {
      const rows = (e.summary.variants || []).map((v) =>
          '<tr><td><span class="dot" style="background:' + color(num(v.variant)) + '"></span>' +
          escapeHtml(v.label) + '</td><td>' + fmt(num(v.initial_loss)) + '</td><td>' +
          fmt(num(v.final_loss)) + '</td><td>' + (100 * num(v.final_accuracy)).toFixed(1) +
          ' %</td><td>' + (num(v.epochs_to_half_loss) || '—') + '</td><td>' +
          fmt(num(v.mean_output_attenuation), 3) + '</td><td>' + (v.diverged ? 'yes' : 'no') + '</td></tr>');
      $('experiment-summary').innerHTML =
          '<tr><th>variant</th><th>initial loss</th><th>final loss</th><th>final accuracy</th>' +
          '<th>epochs to ½ loss</th><th>mean attenuation</th><th>diverged</th></tr>' + rows.join('');
    }
  }

  function escapeHtml(s) {
    return String(s || '').replace(/[&<>"']/g, (c) =>
        ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'})[c]);
  }

  function renderLists() {
    if (!listDirty) return;
    listDirty = false;
    const now = Date.now();
    $('networks').innerHTML = [...networks.values()].map((n) => {
      const last = n.last || {};
      const active = now - n.lastTime < 5000;
      return '<li data-kind="network" data-key="' + escapeHtml(n.name) + '"' +
          (isSelected('network', n.name) ? ' class="selected"' : '') + '>' +
          '<div class="name"><span class="dot' + (active ? ' active' : '') + '"></span>' +
          escapeHtml(n.id) + '</div><div class="meta"><span>step ' + fmt(last.step, 8) +
          '</span><span>loss ' + fmt(last.loss, 3) + '</span><span>att ' +
          fmt(last.attenuation, 2) + '</span></div></li>';
    }).join('');
    $('networks-empty').hidden = networks.size > 0;
    $('experiments').innerHTML = [...experiments.values()].map((e) =>
        '<li data-kind="experiment" data-key="' + escapeHtml(e.id) + '"' +
        (isSelected('experiment', e.id) ? ' class="selected"' : '') + '>' +
        '<div class="name"><span class="dot' + (e.summary ? '' : ' active') + '"></span>' +
        escapeHtml(e.name) + '</div><div class="meta"><span>' + e.variants.size +
        ' variants</span><span>' + e.done + ' / ' + e.total + ' epochs</span></div></li>').join('');
    $('experiments-empty').hidden = experiments.size > 0;
    $('counters').textContent = eventsSeen + ' events' +
        (droppedSeen ? ' · ' + droppedSeen + ' dropped' : '');
  }

  function render() {
    renderPending = false;
    renderLists();
    const showNetwork = selected && selected.kind === 'network' && networks.has(selected.key);
    const showExperiment = selected && selected.kind === 'experiment' && experiments.has(selected.key);
    $('welcome').hidden = showNetwork || showExperiment;
    $('network-view').hidden = !showNetwork;
    $('experiment-view').hidden = !showExperiment;
    if (showNetwork) renderNetwork(networks.get(selected.key));
    if (showExperiment) renderExperiment(experiments.get(selected.key));
  }

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(render);
  }

  // ---------- wiring ----------

  function onListClick(ev) {
    const li = ev.target.closest('li[data-kind]');
    if (li) select(li.dataset.kind, li.dataset.key);
  }
  $('networks').addEventListener('click', onListClick);
  $('experiments').addEventListener('click', onListClick);
  $('loss-log').addEventListener('change', () => { rebuildCharts(); scheduleRender(); });
  // Activity dots and "training/idle" age even without events.
  setInterval(() => { listDirty = true; scheduleRender(); }, 2000);

  Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
  Chart.defaults.color = '#4a5264';
  connect();
})();
