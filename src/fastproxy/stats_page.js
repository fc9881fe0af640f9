// The charts of the stats page: every two seconds the history of each frontend and backend
// (its ";history" JSON), drawn as two lines in the SVG under its proxy's title: sessions (red) and
// bytes per second in and out (blue).  No external asset, nothing fetched but the page's own JSON.
(function () {
  var W = 240, H = 36;
  function line(points, scale, color) {
    if (points.length < 2) return '';
    var t0 = points[0][0], span = Math.max(points[points.length - 1][0] - t0, 1);
    var d = points.map(function (p, i) {
      return (i ? 'L' : 'M') + (W * (p[0] - t0) / span).toFixed(1) + ' ' + (H - 2 - (H - 4) * p[1] / scale).toFixed(1);
    }).join(' ');
    return '<path d="' + d + '" fill="none" stroke="' + color + '" stroke-width="1.5"/>';
  }
  function human(n) { return n >= 1e9 ? (n / 1e9).toFixed(1) + 'G' : n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e3 ? (n / 1e3).toFixed(1) + 'k' : String(Math.round(n)); }
  function draw(history) {
    document.querySelectorAll('div.chart').forEach(function (div) {
      var series = history[div.getAttribute('data-key')] || [];
      var sessions = series.map(function (p) { return [p[0], p[1]]; });
      var rates = [];
      for (var i = 1; i < series.length; i++) {
        var dt = Math.max(series[i][0] - series[i - 1][0], 0.001);
        rates.push([series[i][0], Math.max(series[i][2] - series[i - 1][2] + series[i][3] - series[i - 1][3], 0) / dt]);
      }
      var maxS = Math.max.apply(null, [1].concat(sessions.map(function (p) { return p[1]; })));
      var maxR = Math.max.apply(null, [1].concat(rates.map(function (p) { return p[1]; })));
      div.querySelector('svg').innerHTML = line(sessions, maxS, '#b00040') + line(rates, maxR, '#2060c0');
      div.querySelector('span').textContent = 'sessions (max ' + maxS + ', red), throughput (max ' + human(maxR) + 'B/s, blue), last ' + Math.round(series.length ? series[series.length - 1][0] - series[0][0] : 0) + ' s';
    });
  }
  function load() {
    var request = new XMLHttpRequest();
    request.open('GET', HISTORY_URI);
    request.onload = function () { if (request.status === 200) draw(JSON.parse(request.responseText)); };
    request.send();
  }
  load();
  setInterval(load, 2000);
})();
