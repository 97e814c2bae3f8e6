(function () {
  'use strict';
  var table = document.getElementById('per-image');
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function rows() { return Array.prototype.slice.call(body.rows); }

  function sortBy(index, ascending) {
    var numeric = headers[index].getAttribute('data-type') === 'number';
    var sorted = rows().sort(function (a, b) {
      var x = a.cells[index].getAttribute('data-value');
      var y = b.cells[index].getAttribute('data-value');
      var order = numeric ? Number(x) - Number(y) : (x < y ? -1 : (x > y ? 1 : 0));
      return ascending ? order : -order;
    });
    sorted.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (header, i) {
      header.setAttribute('aria-sort', i !== index ? 'none' :
                          (ascending ? 'ascending' : 'descending'));
    });
  }
  headers.forEach(function (header, index) {
    header.addEventListener('click', function () {
      sortBy(index, header.getAttribute('aria-sort') !== 'ascending');
    });
  });

  var viewer = document.getElementById('viewer');
  if (!viewer) { return; }
  var files = JSON.parse(document.getElementById('image-files').textContent);
  var stage = document.getElementById('stage');
  var main = document.getElementById('view-main');
  var over = document.getElementById('view-over');
  var split = document.getElementById('split');
  var splitAt = document.getElementById('split-at');
  var zoom = document.getElementById('zoom');
  var caption = document.getElementById('view-caption');
  var modes = Array.prototype.slice.call(viewer.querySelectorAll('[data-mode]'));
  var labels = {blur: 'blurred', deblurred: 'restored', sharp: 'sharp'};
  var current = null;
  var mode = 'deblurred';

  function withImages() {
    return rows().filter(function (row) {
      return Object.prototype.hasOwnProperty.call(files, row.getAttribute('data-name'));
    });
  }
  function show() {
    var paths = files[current];
    main.src = split.checked ? paths.deblurred : paths[mode];
    over.hidden = !split.checked;
    if (split.checked) {
      over.src = paths.blur;
      over.style.clipPath = 'inset(0 ' + (100 - Number(splitAt.value)) + '% 0 0)';
    }
    splitAt.disabled = !split.checked;
    modes.forEach(function (button) {
      var on = !split.checked && button.getAttribute('data-mode') === mode;
      button.setAttribute('aria-pressed', String(on));
    });
    var summary = '';
    rows().forEach(function (row) {
      var selected = row.getAttribute('data-name') === current;
      row.classList.toggle('selected', selected);
      if (selected) { summary = row.getAttribute('data-summary'); }
    });
    main.alt = current + ', ' + (split.checked ? 'restored' : labels[mode]);
    caption.textContent = current + ': ' +
        (split.checked ? 'blurred (left) | restored (right)' : labels[mode]) + '. ' + summary;
  }
  function select(name) { current = name; show(); }
  function move(delta) {
    var list = withImages();
    var names = list.map(function (row) { return row.getAttribute('data-name'); });
    var next = (names.indexOf(current) + delta + names.length) % names.length;
    select(names[next]);
  }
  function setMode(value) { mode = value; split.checked = false; show(); }
  function toggleZoom() {
    var full = stage.classList.toggle('full');
    zoom.setAttribute('aria-pressed', String(full));
  }
  body.addEventListener('click', function (event) {
    var row = event.target.closest('tr');
    if (row && Object.prototype.hasOwnProperty.call(files, row.getAttribute('data-name'))) {
      select(row.getAttribute('data-name'));
    }
  });
  modes.forEach(function (button) {
    button.addEventListener('click', function () { setMode(button.getAttribute('data-mode')); });
  });
  split.addEventListener('change', show);
  splitAt.addEventListener('input', show);
  zoom.addEventListener('click', toggleZoom);
  stage.addEventListener('click', toggleZoom);
  document.getElementById('prev').addEventListener('click', function () { move(-1); });
  document.getElementById('next').addEventListener('click', function () { move(1); });
  document.addEventListener('keydown', function (event) {
    if (event.target.tagName === 'INPUT' || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    var keys = {'1': 'blur', '2': 'deblurred', '3': 'sharp'};
    if (keys[event.key]) { setMode(keys[event.key]); }
    else if (event.key === 's') { split.checked = !split.checked; show(); }
    else if (event.key === 'z') { toggleZoom(); }
    else if (event.key === 'n') { move(1); }
    else if (event.key === 'p') { move(-1); }
  });
  select(withImages()[0].getAttribute('data-name'));
})();
