// facerec console: plain JavaScript, no framework, no build step. It uses only the public
// HTTP API (the same requests any client makes), with the tab's API key when keys exist.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = 'facerec.apiKey';
const SET_PAGE = 20;

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || '',
  ready: null, // the last /ready answer
  threshold: 0.6, // the model's, from /ready
  sets: [], // [{face_set, face_num}]
  detect: null, // {faces, width, height}
  chosen: null, // index of the chosen face in detect.faces
  hits: [], // the last search's results
  setView: { name: null, offset: 0, total: 0 },
  crops: new Map(), // crop file name -> Promise<blob URL or null>
  photoUrls: new Map(), // element id -> blob URL shown there
};

// ---- the API ---------------------------------------------------------------------------

/** An answer in the API's error shape (or a failure to reach it). */
class ApiError extends Error {
  constructor(status, code, name, detail) {
    super(detail);
    this.status = status;
    this.code = code;
    this.name = name;
    this.detail = detail;
  }
}

/** What each error code means, in words, before the server's own detail. */
const CODE_WORDS = {
  1001: 'A value was not accepted',
  1002: 'Something required is missing',
  1003: 'The server could not do it now',
  1004: 'The file is not a usable image (not a JPEG or PNG, damaged, too large or too small)',
  1005: 'The upload could not be read',
  1006: 'That face is no longer known (its token expired or was removed)',
  1007: 'No face was found',
  1008: 'No such route',
  1009: 'Method not allowed',
  1010: 'An API key is needed',
  1011: 'This API key may not do that',
  1012: 'Too many requests: wait a moment',
};

/**
 * Calls the API. `body` is a FormData or URLSearchParams (or absent); `query` becomes the
 * query string. Answers the parsed JSON, or the Response itself for non-JSON answers.
 */
async function api(path, { method = 'GET', body, query, raw = false } = {}) {
  const headers = {};
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const url = query ? `${path}?${new URLSearchParams(query)}` : path;
  let res;
  try {
    res = await fetch(url, { method, headers, body, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 0, 'NETWORK', `the server did not answer (${e.message}); a file over the size limit can also end the upload`);
  }
  const type = res.headers.get('content-type') || '';
  if (type.startsWith('application/json')) {
    const data = await res.json();
    if (!res.ok || data.success === false) {
      const error = new ApiError(res.status, data.error_code || 0, data.error_message || `HTTP ${res.status}`,
        data.detail || res.statusText);
      if (res.status === 401) askForKey(error.detail);
      throw error;
    }
    return data;
  }
  if (!res.ok) throw new ApiError(res.status, 0, `HTTP ${res.status}`, res.statusText);
  return raw ? res : res.text();
}

/** Shows an error in `box` (an element with class `error`), or hides it when `error` is null. */
function showError(box, error) {
  box.replaceChildren();
  if (!error) {
    box.hidden = true;
    return;
  }
  const title = document.createElement('strong');
  const detail = document.createElement('span');
  if (error instanceof ApiError) {
    const words = CODE_WORDS[error.code] || 'The request failed';
    title.textContent = error.code ? `Error ${error.code} ${error.name}: ${words}` : words;
    detail.textContent = error.detail;
  } else {
    title.textContent = 'Something went wrong in the page';
    detail.textContent = String(error && error.message ? error.message : error);
  }
  box.append(title, detail);
  box.hidden = false;
}

/** Runs `work`, showing its error (if any) in `box`; `busy` is disabled meanwhile. */
async function attempt(box, work, busy) {
  showError(box, null);
  if (busy) busy.disabled = true;
  try {
    return await work();
  } catch (e) {
    showError(box, e);
    return undefined;
  } finally {
    if (busy) busy.disabled = false;
  }
}

/** A crop as a blob URL, or null when the server no longer keeps it. Asked once per name. */
function cropUrl(faceName) {
  if (!state.crops.has(faceName)) {
    const load = api(`/crops/${encodeURIComponent(faceName)}`, { raw: true })
      .then((res) => res.blob())
      .then((blob) => URL.createObjectURL(blob))
      .catch(() => null);
    state.crops.set(faceName, load);
  }
  return state.crops.get(faceName);
}

/** An element showing a face's crop: the image when kept, else a note saying so. */
function cropElement(faceName, alt) {
  const holder = document.createElement('div');
  holder.className = 'no-crop';
  holder.textContent = 'loading…';
  cropUrl(faceName).then((url) => {
    if (url) {
      const img = document.createElement('img');
      img.className = 'crop';
      img.alt = alt;
      img.src = url;
      holder.replaceWith(img);
    } else {
      holder.textContent = 'no crop kept';
    }
  });
  return holder;
}

/** Shows `file` in the <img> `img`, freeing the photo it showed before. */
function showPhoto(img, file) {
  const old = state.photoUrls.get(img.id);
  if (old) URL.revokeObjectURL(old);
  const url = URL.createObjectURL(file);
  state.photoUrls.set(img.id, url);
  img.src = url;
  img.hidden = false;
  return img.decode().catch(() => undefined);
}

const fixed = (x, digits = 3) => Number(x).toFixed(digits);
const SVG = 'http://www.w3.org/2000/svg';
function svg(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// ---- API key ---------------------------------------------------------------------------

function askForKey(reason) {
  const dialog = $('key-dialog');
  $('key-reason').textContent = reason || 'This server needs an API key.';
  $('key-input').value = '';
  $('key-button').hidden = false;
  if (!dialog.open) dialog.showModal();
  $('key-input').focus();
}

function useKey() {
  const key = $('key-input').value.trim();
  if (!key) return;
  state.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  state.crops.clear();
  $('key-dialog').close();
  refreshAll();
}

function forgetKey() {
  state.key = '';
  sessionStorage.removeItem(KEY_STORAGE);
  $('key-input').value = '';
  $('key-reason').textContent = 'The key is forgotten. Enter one to go on.';
}

// ---- tabs ------------------------------------------------------------------------------

const TABS = ['detect', 'search', 'compare', 'sets', 'status'];

function selectTab(name, focus = false) {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (name === 'sets') loadSets();
  if (name === 'status') loadStatus();
}

function onTabKey(event) {
  const i = TABS.findIndex((t) => `tab-${t}` === event.target.id);
  let next = null;
  if (event.key === 'ArrowRight') next = (i + 1) % TABS.length;
  if (event.key === 'ArrowLeft') next = (i + TABS.length - 1) % TABS.length;
  if (event.key === 'Home') next = 0;
  if (event.key === 'End') next = TABS.length - 1;
  if (next !== null) {
    event.preventDefault();
    selectTab(TABS[next], true);
  }
}

// ---- face sets (shared by enrol, search and the sets tab) ------------------------------

async function loadSetNames() {
  const data = await api('/facesets');
  state.sets = data.face_sets;
  fillSetSelect($('enrol-set'), true);
  fillSetSelect($('search-set'), false);
  return state.sets;
}

function fillSetSelect(select, allowNew) {
  const previous = select.value;
  select.replaceChildren();
  const names = state.sets.map((s) => s.face_set);
  if (!names.includes('default')) names.unshift('default');
  for (const name of names) {
    const info = state.sets.find((s) => s.face_set === name);
    select.append(new Option(`${name} (${info ? info.face_num : 0})`, name));
  }
  if (allowNew) select.append(new Option('New face set…', '+new'));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  if (allowNew) $('enrol-new-set-box').hidden = select.value !== '+new';
}

// ---- detect & enrol --------------------------------------------------------------------

async function detect(file) {
  const status = $('detect-status');
  $('detect-result').hidden = true;
  $('enrol-form').hidden = true;
  state.detect = null;
  state.chosen = null;
  status.textContent = `Detecting faces in ${file.name}…`;
  const data = await attempt($('detect-error'), async () => {
    const form = new FormData();
    form.append('image_file', file);
    return api('/detect', { method: 'POST', body: form });
  });
  if (!data) {
    status.textContent = '';
    return;
  }
  const photo = $('detect-photo');
  await showPhoto(photo, file);
  state.detect = { faces: data.faces, width: photo.naturalWidth, height: photo.naturalHeight };
  renderDetect();
}

function minScore() {
  const v = Number($('detect-min-score').value);
  return Number.isFinite(v) ? v : 0;
}

function renderDetect() {
  const d = state.detect;
  if (!d) return;
  const threshold = minScore();
  const sure = d.faces.filter((f) => f.score >= threshold).length;
  const noun = d.faces.length === 1 ? 'face' : 'faces';
  $('detect-status').textContent = d.faces.length === 0
    ? 'No face found in this photo.'
    : `${d.faces.length} ${noun} found, ${sure} scoring at least ${threshold}.`;

  const overlay = $('detect-overlay');
  overlay.setAttribute('viewBox', `0 0 ${d.width} ${d.height}`);
  overlay.replaceChildren();
  const unit = Math.max(d.width, d.height) / 100;
  d.faces.forEach((f, i) => {
    const [x1, y1] = f.top_left;
    const [x2, y2] = f.bottom_right;
    const g = svg('g', { class: 'face', 'data-index': i, 'data-score': f.score });
    if (f.score < threshold) g.classList.add('low');
    if (state.chosen === i) g.classList.add('chosen');
    g.append(svg('rect', { x: x1, y: y1, width: x2 - x1, height: y2 - y1, 'vector-effect': 'non-scaling-stroke' }));
    const r = Math.max((x2 - x1) / 40, unit / 4);
    for (const [x, y] of f.landmarks) g.append(svg('circle', { cx: x, cy: y, r }));
    const label = svg('text', { x: x1, y: Math.max(y1 - unit / 2, unit * 2), 'font-size': unit * 2.2 });
    label.textContent = `${i + 1}: ${fixed(f.score)}`;
    g.append(label);
    g.addEventListener('click', () => chooseFace(i));
    overlay.append(g);
  });

  const list = $('detect-faces');
  list.replaceChildren();
  d.faces.forEach((f, i) => {
    const li = document.createElement('li');
    li.dataset.index = i;
    if (f.score < threshold) li.classList.add('low');
    if (state.chosen === i) li.classList.add('chosen');
    const pick = document.createElement('button');
    pick.type = 'button';
    pick.className = 'pick';
    pick.setAttribute('aria-pressed', String(state.chosen === i));
    pick.append(cropElement(f.face_name, `Face ${i + 1}`));
    const text = document.createElement('span');
    text.textContent = `Face ${i + 1} · score ${fixed(f.score, 4)}`;
    pick.append(text);
    pick.addEventListener('click', () => chooseFace(i));
    const token = document.createElement('span');
    token.className = 'token';
    token.textContent = f.face_token;
    li.append(pick, token);
    list.append(li);
  });
  $('detect-result').hidden = false;
}

function chosenFace() {
  return state.detect && state.chosen !== null ? state.detect.faces[state.chosen] : null;
}

function chooseFace(i) {
  state.chosen = i;
  renderDetect();
  const face = chosenFace();
  const form = $('enrol-form');
  form.hidden = false;
  showError($('enrol-error'), null);
  $('enrol-status').textContent = '';
  cropUrl(face.face_name).then((url) => {
    const img = $('enrol-crop');
    if (url) img.src = url;
    else img.removeAttribute('src');
  });
  $('enrol-name').focus();
}

async function enrol(event) {
  event.preventDefault();
  const face = chosenFace();
  if (!face) return;
  const name = $('enrol-name').value.trim();
  let set = $('enrol-set').value;
  if (set === '+new') set = $('enrol-new-set').value.trim();
  const status = $('enrol-status');
  status.textContent = '';
  const done = await attempt($('enrol-error'), async () => {
    if (!name) throw new ApiError(0, 1002, 'MISSING_ARGUMENTS', 'type a name for the face');
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(set)) {
      throw new ApiError(0, 1001, 'BAD_ARGUMENTS', 'a face set is 1-64 of A-Z a-z 0-9 _ -');
    }
    const body = new URLSearchParams({ face_token: face.face_token, face_name: name, face_set: set });
    await api('/addface', { method: 'POST', body });
    await loadSetNames();
    return true;
  }, $('enrol-button'));
  if (done) {
    const info = state.sets.find((s) => s.face_set === set);
    $('enrol-set').value = set;
    fillSetSelect($('enrol-set'), true);
    const n = info ? info.face_num : 0;
    status.textContent = `Enrolled “${name}” in face set ${set}, which now holds ${n} ${n === 1 ? 'face' : 'faces'}.`;
  }
}

function searchWithChosen() {
  const face = chosenFace();
  if (!face) return;
  selectTab('search', true);
  const query = new URLSearchParams({ face_token: face.face_token });
  runSearch(query, face.face_name, `Face ${state.chosen + 1} of the photo in Detect`);
}

// ---- search ----------------------------------------------------------------------------

function searchThreshold() {
  return Number($('search-threshold').value);
}

async function searchPhoto(file) {
  const form = new FormData();
  form.append('image_file', file);
  await runSearch(form, null, `the largest face in ${file.name}`);
}

/** Searches with a wide threshold once, so that the slider re-marks without asking again. */
async function runSearch(body, queryCrop, what) {
  const status = $('search-status');
  $('search-results').replaceChildren();
  $('search-query').hidden = true;
  state.hits = [];
  status.textContent = `Searching for ${what}…`;
  const set = $('search-set').value || 'default';
  body.append('face_set', set);
  body.append('threshold', $('search-threshold').max);
  body.append('top_k', '20');
  if ($('search-group').checked) body.append('group_by', 'name');
  const data = await attempt($('search-error'), () => api('/search', { method: 'POST', body }));
  if (!data) {
    status.textContent = '';
    return;
  }
  state.hits = data.cmp_result;
  state.searchSet = data.face_set;
  const crop = $('search-query-crop');
  cropUrl(queryCrop || `${data.face_token}.jpg`).then((url) => {
    if (url) crop.src = url;
    else crop.removeAttribute('src');
  });
  $('search-query-text').textContent = `Searched face set ${data.face_set} for ${what}.`;
  $('search-query').hidden = false;
  renderHits();
}

function renderHits() {
  const t = searchThreshold();
  $('search-threshold-value').textContent = fixed(t, 2);
  const list = $('search-results');
  list.replaceChildren();
  const status = $('search-status');
  if (!state.searchSet) return;
  const same = state.hits.filter((h) => h.distance < t).length;
  status.textContent = state.hits.length === 0
    ? `No face in ${state.searchSet} is within distance ${$('search-threshold').max}.`
    : `${same} of the ${state.hits.length} nearest faces are nearer than ${fixed(t, 2)}: the same person.`;
  for (const hit of state.hits) {
    const isSame = hit.distance < t;
    const li = document.createElement('li');
    li.className = isSame ? 'near' : 'far';
    li.dataset.name = hit.face_name;
    li.dataset.distance = hit.distance;
    const who = document.createElement('div');
    who.className = 'who';
    const name = document.createElement('strong');
    name.className = 'name';
    name.textContent = hit.face_name;
    const token = document.createElement('div');
    token.className = 'token';
    token.textContent = hit.face_token;
    who.append(name, token);
    const distance = document.createElement('span');
    distance.className = 'distance';
    distance.textContent = `distance ${fixed(hit.distance)}`;
    const mark = document.createElement('span');
    mark.className = `mark ${isSame ? 'same' : 'other'}`;
    mark.textContent = isSame ? '✓ same person' : '✗ not the same';
    li.append(cropElement(`${hit.face_token}.jpg`, hit.face_name), who, distance, mark);
    list.append(li);
  }
}

// ---- compare ---------------------------------------------------------------------------

const comparePhotos = { a: null, b: null };

async function pickCompare(side, file) {
  comparePhotos[side] = file;
  $('compare-verdict').textContent = '';
  await showPhoto($(`compare-photo-${side}`), file);
  $('compare-button').disabled = !(comparePhotos.a && comparePhotos.b);
}

async function compare() {
  const verdict = $('compare-verdict');
  verdict.textContent = 'Comparing…';
  verdict.className = 'verdict';
  const data = await attempt($('compare-error'), () => {
    const form = new FormData();
    form.append('image_file_a', comparePhotos.a);
    form.append('image_file_b', comparePhotos.b);
    return api('/compare', { method: 'POST', body: form });
  }, $('compare-button'));
  if (!data) {
    verdict.textContent = '';
    return;
  }
  const same = data.same_person;
  verdict.className = `verdict ${same ? 'same' : 'other'}`;
  verdict.dataset.distance = data.distance;
  verdict.textContent = same
    ? `The same person: distance ${fixed(data.distance)} is below ${data.threshold}.`
    : `Not the same person: distance ${fixed(data.distance)} is not below ${data.threshold}.`;
}

// ---- face sets -------------------------------------------------------------------------

/** Marks `panel` busy while `work` runs (for assistive technology, and for tests to wait on). */
async function busy(panel, work) {
  panel.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    panel.setAttribute('aria-busy', 'false');
  }
}

function loadSets() {
  return busy($('panel-sets'), showSets);
}

async function showSets() {
  const sets = await attempt($('sets-error'), loadSetNames);
  if (!sets) return;
  const body = $('sets-table').tBodies[0];
  body.replaceChildren();
  for (const s of sets) {
    const tr = document.createElement('tr');
    tr.dataset.set = s.face_set;
    const name = document.createElement('td');
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'link';
    open.textContent = s.face_set;
    open.addEventListener('click', () => openSet(s.face_set, 0));
    name.append(open);
    const count = document.createElement('td');
    count.className = 'num count';
    count.textContent = s.face_num;
    tr.append(name, count);
    body.append(tr);
  }
  $('sets-empty').hidden = sets.length > 0;
  if (state.setView.name) await openSet(state.setView.name, state.setView.offset, false);
}

async function openSet(name, offset, focus = true) {
  const data = await attempt($('sets-error'), () => api('/faceset', {
    query: { face_set: name, offset, limit: SET_PAGE },
  }));
  if (!data) return;
  if (data.faces.length === 0 && offset > 0 && data.face_num > 0) {
    // The page emptied (faces removed): show the last page that has faces.
    return openSet(name, Math.max(0, Math.floor((data.face_num - 1) / SET_PAGE) * SET_PAGE), focus);
  }
  state.setView = { name, offset, total: data.face_num };
  $('set-title').textContent = `${name}: ${data.face_num} ${data.face_num === 1 ? 'face' : 'faces'}`;
  const list = $('set-faces');
  list.replaceChildren();
  for (const f of data.faces) {
    const li = document.createElement('li');
    li.dataset.token = f.face_token;
    const who = document.createElement('strong');
    who.textContent = f.face_name;
    const token = document.createElement('span');
    token.className = 'token';
    token.textContent = f.face_token;
    const added = document.createElement('span');
    added.className = 'muted';
    added.textContent = `added ${new Date(f.created_unix_ms).toLocaleString()}`;
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'danger';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${f.face_name} (${f.face_token})`);
    remove.addEventListener('click', () => confirmRemove(name, f));
    li.append(cropElement(`${f.face_token}.jpg`, f.face_name), who, token, added, remove);
    list.append(li);
  }
  const last = offset + data.faces.length;
  $('set-page').textContent = data.face_num === 0 ? 'empty' : `${offset + 1}-${last} of ${data.face_num}`;
  $('set-prev').disabled = offset === 0;
  $('set-next').disabled = last >= data.face_num;
  $('set-view').hidden = false;
  if (focus) $('set-title').scrollIntoView({ block: 'nearest' });
  return data;
}

function confirmRemove(set, face) {
  const dialog = $('confirm-dialog');
  $('confirm-text').textContent = `Remove “${face.face_name}” (${face.face_token}) from face set ${set}? This cannot be undone.`;
  dialog.dataset.set = set;
  dialog.dataset.token = face.face_token;
  dialog.showModal();
  $('confirm-cancel').focus();
}

async function removeConfirmed() {
  const dialog = $('confirm-dialog');
  dialog.close();
  const body = new URLSearchParams({ face_token: dialog.dataset.token, face_set: dialog.dataset.set });
  await busy($('panel-sets'), async () => {
    const done = await attempt($('sets-error'), () => api('/removeface', { method: 'POST', body }));
    if (done) await showSets();
  });
}

// ---- status ----------------------------------------------------------------------------

/** Prometheus text: [{name, labels, value}] for every sample line. */
function parseMetrics(text) {
  const samples = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const l of text.split('\n')) {
    if (!l || l.startsWith('#')) continue;
    const m = line.exec(l);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(label)) labels[k] = v.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** Count, mean and p50/p95 (interpolated in the buckets) of one histogram series. */
function histogram(samples, name, key, value) {
  const mine = samples.filter((s) => s.labels[key] === value);
  const count = mine.find((s) => s.name === `${name}_count`)?.value || 0;
  const sum = mine.find((s) => s.name === `${name}_sum`)?.value || 0;
  const buckets = mine.filter((s) => s.name === `${name}_bucket`)
    .map((s) => ({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), n: s.value }))
    .sort((a, b) => a.le - b.le);
  // Linear within the bucket the rank falls in; in the first bucket only its bound is known.
  const quantile = (q) => {
    const rank = q * count;
    let below = 0;
    let lower = 0;
    for (const b of buckets) {
      if (b.n >= rank) {
        if (b.le === Infinity) return { at: lower, over: true };
        if (lower === 0) return { at: b.le, under: true };
        const inBucket = b.n - below;
        return { at: inBucket > 0 ? lower + (b.le - lower) * ((rank - below) / inBucket) : b.le };
      }
      below = b.n;
      lower = b.le;
    }
    return { at: lower, over: true };
  };
  return { count, mean: count ? sum / count : 0, p50: quantile(0.5), p95: quantile(0.95) };
}

/** A quantile estimate in words: a bound when it fell in the first or the open last bucket. */
function estimate(q) {
  if (q.under) return `< ${ms(q.at)}`;
  if (q.over) return `> ${ms(q.at)}`;
  return ms(q.at);
}

function ms(seconds) {
  if (seconds >= 1) return `${fixed(seconds, 2)} s`;
  return `${fixed(seconds * 1000, seconds < 0.001 ? 2 : 1)} ms`;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [d && `${d} d`, (d || h) && `${h} h`, (d || h || m) && `${m} min`, `${s} s`].filter(Boolean).join(' ');
}

function loadStatus() {
  return busy($('panel-status'), showStatus);
}

async function showStatus() {
  const ok = await attempt($('status-error'), async () => {
    const ready = await api('/ready');
    state.ready = ready;
    let faces = '—';
    try {
      const sets = await loadSetNames();
      faces = sets.reduce((n, s) => n + s.face_num, 0);
    } catch (e) {
      faces = `(${e.detail || e.message})`;
    }
    const facts = [
      ['Model', `${ready.model} (${ready.dims}-d)`],
      ['Same person below', ready.threshold],
      ['Faces stored', faces],
      ['Face sets', ready.face_sets],
      ['Tokens held', ready.face_tokens],
      ['Uptime', duration(ready.uptime_s)],
      ['API keys', ready.keys_required ? 'required' : 'not required'],
    ];
    const list = $('status-list');
    list.replaceChildren();
    for (const [k, v] of facts) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = String(v);
      dd.dataset.fact = k;
      list.append(dt, dd);
    }
    return true;
  }, $('status-refresh'));
  if (ok) await loadLatency();
}

async function loadLatency() {
  const note = $('metrics-note');
  const table = $('latency-table');
  let text;
  try {
    text = await api('/metrics');
  } catch (e) {
    table.hidden = true;
    note.textContent = e.code === 1011 || e.code === 1010
      ? 'Latency figures come from /metrics, which needs an admin key.'
      : `Latency figures could not be read: ${e.detail || e.message}`;
    return;
  }
  const samples = parseMetrics(text);
  const rows = [];
  const endpoints = new Set(samples
    .filter((s) => s.name === 'facerec_http_request_duration_seconds_count' && s.value > 0)
    .map((s) => s.labels.endpoint));
  for (const e of [...endpoints].sort()) {
    rows.push([e, histogram(samples, 'facerec_http_request_duration_seconds', 'endpoint', e)]);
  }
  const stages = samples
    .filter((s) => s.name === 'facerec_stage_duration_seconds_count' && s.value > 0)
    .map((s) => s.labels.stage);
  for (const st of stages) {
    rows.push([`stage: ${st}`, histogram(samples, 'facerec_stage_duration_seconds', 'stage', st)]);
  }
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const [what, h] of rows) {
    const tr = document.createElement('tr');
    const cells = [what, String(h.count), ms(h.mean), estimate(h.p50), estimate(h.p95)];
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      td.textContent = c;
      if (i > 0) td.className = 'num';
      tr.append(td);
    });
    body.append(tr);
  }
  table.hidden = rows.length === 0;
  note.textContent = rows.length === 0
    ? 'No request timed yet.'
    : 'Since the server started; p50 and p95 are estimated within the histogram buckets.';
}

// ---- start -----------------------------------------------------------------------------

/** A drop zone: drop a file on `zone` or choose it with `input`; `use` gets the file. */
function dropZone(zone, input, use) {
  input.addEventListener('change', () => {
    if (input.files.length) use(input.files[0]);
    input.value = '';
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    if (e.dataTransfer.files.length) use(e.dataTransfer.files[0]);
  });
}

async function refreshAll() {
  try {
    const ready = await api('/ready');
    state.ready = ready;
    state.threshold = ready.threshold;
    const slider = $('search-threshold');
    slider.max = String(Math.max(ready.threshold * 2, 0.1));
    slider.value = String(ready.threshold);
    renderHits();
    $('server-line').textContent = `${ready.model} · same person below ${ready.threshold}`;
    $('key-button').hidden = !ready.keys_required;
    if (ready.keys_required && !state.key) {
      askForKey('This server needs an API key for every request.');
      return;
    }
    await loadSetNames();
    const open = TABS.find((t) => !$(`panel-${t}`).hidden);
    if (open === 'sets') await loadSets();
    if (open === 'status') await loadStatus();
  } catch (e) {
    $('server-line').textContent = e instanceof ApiError
      ? `${e.code ? `error ${e.code}: ` : ''}${e.detail}`
      : String(e);
  }
}

function start() {
  for (const t of TABS) {
    $(`tab-${t}`).addEventListener('click', () => selectTab(t));
    $(`tab-${t}`).addEventListener('keydown', onTabKey);
  }
  dropZone($('detect-drop'), $('detect-file'), detect);
  $('detect-min-score').addEventListener('input', renderDetect);
  $('enrol-form').addEventListener('submit', enrol);
  $('enrol-set').addEventListener('change', () => {
    $('enrol-new-set-box').hidden = $('enrol-set').value !== '+new';
    if (!$('enrol-new-set-box').hidden) $('enrol-new-set').focus();
  });
  $('enrol-search').addEventListener('click', searchWithChosen);
  dropZone($('search-drop'), $('search-file'), searchPhoto);
  $('search-threshold').addEventListener('input', renderHits);
  dropZone($('compare-drop-a'), $('compare-file-a'), (f) => pickCompare('a', f));
  dropZone($('compare-drop-b'), $('compare-file-b'), (f) => pickCompare('b', f));
  $('compare-button').addEventListener('click', compare);
  $('sets-refresh').addEventListener('click', loadSets);
  $('set-prev').addEventListener('click', () => openSet(state.setView.name, Math.max(0, state.setView.offset - SET_PAGE)));
  $('set-next').addEventListener('click', () => openSet(state.setView.name, state.setView.offset + SET_PAGE));
  $('confirm-cancel').addEventListener('click', () => $('confirm-dialog').close());
  $('confirm-ok').addEventListener('click', removeConfirmed);
  $('status-refresh').addEventListener('click', loadStatus);
  $('key-button').addEventListener('click', () => askForKey(state.key
    ? 'A key is in use for this tab. Enter another, or forget it.'
    : 'Enter an API key for this tab.'));
  $('key-use').addEventListener('click', useKey);
  $('key-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') useKey();
  });
  $('key-forget').addEventListener('click', forgetKey);
  $('key-cancel').addEventListener('click', () => $('key-dialog').close());
  // Dropping a file anywhere else must not navigate away from the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  refreshAll();
}

start();
