// The live dashboard: candlesticks, moving averages, Bollinger band, volume, alerts, quotes.
// Every 2 s it polls the API; a new warehouse snapshot redraws the chart with Plotly.react and a
// constant uirevision per symbol and range, so the user's zoom, pan and tool survive updates.
"use strict";

const POLL_MS = 2000;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
// Minute bars further apart than this belong to different sessions: the closed market between
// them is left out of the time axis (synthetic markets trade round the clock and keep no gap).
const SESSION_GAP_MS = 60 * MINUTE_MS;
const RANGES = {
  "1D": { timeframe: "1Min", days: 1 },
  "5D": { timeframe: "1Min", days: 5 },
  "1M": { timeframe: "1Day", months: 1 },
  "1Y": { timeframe: "1Day", months: 12 },
  "5Y": { timeframe: "1Day", months: 60 },
  All: { timeframe: "1Day" },
};
const COLORS = {
  up: "#26a69a", down: "#ef5350", sma20: "#f5c542", sma50: "#b084f5",
  band: "rgba(79, 163, 255, 0.55)", bandFill: "rgba(79, 163, 255, 0.07)",
  grid: "#1c242e", text: "#aeb8c4", panel: "#131922", WARN: "#ffb300", ERROR: "#ff5252",
};

const state = {
  symbol: null,
  range: "1D",
  snapshot: null,
  symbols: new Map(),
  quotes: [],
  alerts: [],
  bars: [],
  alertsKey: "",
  barsRequest: 0,
};
const chart = document.getElementById("chart");

// Exchange wall-clock time: the axis shows New York time whatever the browser's zone.
const nyParts = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York", hourCycle: "h23",
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
function nyWallClock(iso) {
  const p = Object.fromEntries(nyParts.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
}
const axisDate = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
const nyTime = (iso) => axisDate(nyWallClock(iso)).slice(11, 19);
const nyDateTime = (iso) => axisDate(nyWallClock(iso)).slice(0, 16);

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}
async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.detail || response.statusText);
  return body;
}

// ---- data -------------------------------------------------------------------------------------

function rangeStart(range) {
  const spec = RANGES[range];
  const span = state.symbols.get(state.symbol) || {};
  if (spec.timeframe === "1Min") {
    if (!span.last_tick_ts) return null;
    return new Date(Date.parse(span.last_tick_ts) - spec.days * DAY_MS).toISOString();
  }
  if (!span.last_trade_date || !spec.months) return null;
  const last = new Date(span.last_trade_date + "T00:00:00Z");
  last.setUTCMonth(last.getUTCMonth() - spec.months);
  return last.toISOString();
}

// Whether the bars loaded are still wanted: a click may have changed symbol or range meanwhile.
async function loadBars() {
  const request = ++state.barsRequest;
  const { timeframe } = RANGES[state.range];
  const params = new URLSearchParams({ timeframe, limit: "10000" });
  const start = rangeStart(state.range);
  if (start) params.set("start", start);
  const bars = [];
  for (let token = null; ;) {
    if (token) params.set("page_token", token);
    const page = await getJSON(`/v1/bars/${encodeURIComponent(state.symbol)}?${params}`);
    bars.push(...page.bars);
    token = page.next_page_token;
    if (!token) break;
  }
  if (request !== state.barsRequest) return false;
  state.bars = bars;
  return true;
}

async function loadSymbols() {
  const { symbols } = await getJSON("/v1/symbols");
  state.symbols = new Map(symbols.map((s) => [s.symbol, s]));
  const select = document.getElementById("symbol");
  const names = symbols.map((s) => s.symbol);
  if (select.options.length !== names.length || names.some((n, i) => select.options[i].value !== n)) {
    select.replaceChildren(...names.map((n) => new Option(n, n)));
  }
  if (!state.symbol || !state.symbols.has(state.symbol)) {
    const fromHash = decodeURIComponent(location.hash.slice(1));
    state.symbol = state.symbols.has(fromHash) ? fromHash : names[0] || null;
  }
  select.value = state.symbol || "";
}

// ---- chart ------------------------------------------------------------------------------------

function xValues(bars, timeframe) {
  return timeframe === "1Min" ? bars.map((b) => axisDate(nyWallClock(b.ts))) : bars.map((b) => b.trade_date);
}

function rangebreaks(bars, x, timeframe) {
  if (timeframe === "1Day") {
    // Weekends, and the weekdays the exchange was closed (no bar between two that exist).
    const have = new Set(x);
    const closed = [];
    for (let i = 1; i < x.length; i++) {
      for (let d = Date.parse(x[i - 1]) + DAY_MS; d < Date.parse(x[i]); d += DAY_MS) {
        const day = new Date(d);
        const iso = day.toISOString().slice(0, 10);
        if (day.getUTCDay() % 6 !== 0 && !have.has(iso)) closed.push(iso);
      }
    }
    return [{ bounds: ["sat", "mon"] }, ...(closed.length ? [{ values: closed }] : [])];
  }
  const breaks = [];
  for (let i = 1; i < bars.length; i++) {
    const previous = Date.parse(x[i - 1] + "Z");
    if (Date.parse(x[i] + "Z") - previous > SESSION_GAP_MS) {
      breaks.push({ bounds: [axisDate(previous + MINUTE_MS), x[i]] });
    }
  }
  return breaks;
}

function alertMarkers(bars, x, timeframe) {
  const index = new Map(
    bars.map((b, i) => [timeframe === "1Min" ? Date.parse(b.ts) : b.trade_date, i])
  );
  const points = { x: [], y: [], text: [], color: [] };
  for (const alert of state.alerts) {
    if (alert.symbol !== state.symbol) continue;
    const minute = Math.floor(Date.parse(alert.event_time) / MINUTE_MS) * MINUTE_MS;
    const key = timeframe === "1Min" ? minute : axisDate(nyWallClock(alert.event_time)).slice(0, 10);
    const i = index.get(key);
    if (i === undefined) continue;
    points.x.push(x[i]);
    points.y.push(bars[i].high * 1.002);
    points.text.push(`${alert.severity} ${alert.rule}<br>${alert.summary}`);
    points.color.push(COLORS[alert.severity] || COLORS.WARN);
  }
  return points;
}

function figure() {
  const { timeframe } = RANGES[state.range];
  const bars = state.bars;
  const x = xValues(bars, timeframe);
  const col = (name) => bars.map((b) => b[name]);
  const up = bars.map((b) => b.close >= b.open);
  const markers = alertMarkers(bars, x, timeframe);
  const line = (name, label, color, extra = {}) => ({
    type: "scatter", mode: "lines", x, y: col(name), name: label,
    line: { color, width: 1.3 }, hoverinfo: "skip", connectgaps: false, ...extra,
  });
  const data = [
    {
      type: "candlestick", name: state.symbol, x,
      open: col("open"), high: col("high"), low: col("low"), close: col("close"),
      increasing: { line: { color: COLORS.up, width: 1 }, fillcolor: COLORS.up },
      decreasing: { line: { color: COLORS.down, width: 1 }, fillcolor: COLORS.down },
      whiskerwidth: 0, showlegend: false,
    },
    line("sma_20", "SMA 20", COLORS.sma20),
    line("sma_50", "SMA 50", COLORS.sma50),
    line("bollinger_upper", "Bollinger 20, 2σ", COLORS.band,
      { line: { color: COLORS.band, width: 0.8, dash: "dot" }, legendgroup: "bb" }),
    line("bollinger_lower", "Bollinger lower", COLORS.band, {
      line: { color: COLORS.band, width: 0.8, dash: "dot" }, legendgroup: "bb", showlegend: false,
      fill: "tonexty", fillcolor: COLORS.bandFill,
    }),
    {
      type: "bar", name: "Volume", x, y: col("volume"), yaxis: "y2", showlegend: false,
      marker: { color: up.map((u) => (u ? COLORS.up : COLORS.down)), opacity: 0.55 },
      hovertemplate: "%{y:,} shares<extra>volume</extra>",
    },
    {
      type: "scatter", mode: "markers", name: "Alerts", x: markers.x, y: markers.y,
      text: markers.text, hovertemplate: "%{text}<extra></extra>",
      marker: { symbol: "triangle-down", size: 12, color: markers.color, line: { color: "#000", width: 1 } },
    },
  ];
  const layout = {
    // Constant per symbol and range: Plotly.react keeps the user's zoom and pan across updates.
    uirevision: `${state.symbol}|${state.range}`,
    datarevision: `${state.snapshot}|${state.alertsKey}`,
    paper_bgcolor: COLORS.panel, plot_bgcolor: COLORS.panel,
    font: { color: COLORS.text, size: 11 },
    margin: { l: 12, r: 64, t: 8, b: 32 },
    hovermode: "x", dragmode: "zoom", bargap: 0.15,
    legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom", bgcolor: "rgba(0,0,0,0)" },
    xaxis: {
      type: "date", anchor: "y2", hoverformat: timeframe === "1Min" ? "%a %b %-d, %H:%M" : "%a %b %-d, %Y", rangeslider: { visible: false }, rangebreaks: rangebreaks(bars, x, timeframe),
      gridcolor: COLORS.grid, showspikes: true, spikemode: "across", spikecolor: "#56606b",
      spikethickness: 1, spikedash: "solid",
    },
    yaxis: { domain: [0.25, 1], side: "right", gridcolor: COLORS.grid, tickformat: ",.2f" },
    yaxis2: { domain: [0, 0.2], side: "right", gridcolor: COLORS.grid, tickformat: "~s" },
  };
  return { data, layout };
}

function draw() {
  const message = document.getElementById("chart-message");
  const { timeframe } = RANGES[state.range];
  message.hidden = state.bars.length > 0;
  if (!state.bars.length) {
    message.textContent = timeframe === "1Day"
      ? `No daily bars for ${state.symbol} yet: materialise daily_bars in Dagster to load them.`
      : `No minute bars for ${state.symbol} yet.`;
  }
  const { data, layout } = figure();
  Plotly.react(chart, data, layout, {
    responsive: true, displaylogo: false, scrollZoom: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d"],
  });
  chart.dataset.snapshot = String(state.snapshot);
  chart.dataset.symbol = state.symbol;
  chart.dataset.range = state.range;
  drawTitle();
}

function drawTitle() {
  const quote = state.quotes.find((q) => q.symbol === state.symbol);
  document.getElementById("title-symbol").textContent = state.symbol || "—";
  document.getElementById("title-price").textContent = quote ? price(quote.last_price) : "";
  const change = document.getElementById("title-change");
  change.textContent = quote && quote.change !== null
    ? `${signed(quote.change)} (${signed(quote.relative_change * 100)}%)` : "";
  change.className = `title-change ${direction(quote && quote.change)}`;
  const count = state.bars.length;
  const unit = RANGES[state.range].timeframe === "1Min" ? "minute" : "daily";
  document.getElementById("title-range").textContent =
    `${state.range} · ${count.toLocaleString()} ${unit} bars · New York time`;
}

// ---- side panels ------------------------------------------------------------------------------

const price = (v) => v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const signed = (v) => (v > 0 ? "+" : v < 0 ? "−" : "") + price(Math.abs(v));
const direction = (v) => (v > 0 ? "up" : v < 0 ? "down" : "");

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  td.className = className;
  return td;
}

function renderQuotes() {
  const rows = state.quotes.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.symbol = q.symbol;
    tr.classList.toggle("selected", q.symbol === state.symbol);
    const dir = direction(q.change);
    tr.append(
      cell(q.symbol, "symbol"),
      cell(price(q.last_price)),
      cell(q.change === null ? "–" : signed(q.change), dir),
      cell(q.relative_change === null ? "–" : `${signed(q.relative_change * 100)}%`, dir),
      cell(nyTime(q.last_ts), "time"),
    );
    tr.addEventListener("click", () => selectSymbol(q.symbol));
    return tr;
  });
  document.getElementById("quotes").replaceChildren(...rows);
}

function renderAlerts() {
  const list = document.getElementById("alerts");
  document.getElementById("alert-count").textContent = `${state.alerts.length} sent`;
  if (!state.alerts.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No alerts sent.";
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...state.alerts.map((a) => {
    const li = document.createElement("li");
    const meta = document.createElement("div");
    meta.className = "meta";
    const sev = document.createElement("span");
    sev.className = `sev ${a.severity}`;
    sev.textContent = a.severity;
    const rule = document.createElement("span");
    rule.className = "rule";
    rule.textContent = `${a.rule}${a.symbol ? " · " + a.symbol : ""}`;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = nyDateTime(a.event_time);
    meta.append(sev, rule, when);
    const summary = document.createElement("div");
    summary.className = "summary";
    summary.textContent = a.summary;
    li.append(meta, summary);
    if (a.symbol && state.symbols.has(a.symbol)) li.addEventListener("click", () => selectSymbol(a.symbol));
    return li;
  }));
}

function renderFreshness(lagSeconds, error) {
  const badge = document.getElementById("freshness");
  if (error) {
    badge.className = "badge stale";
    badge.textContent = error.status === 503 ? "waiting for the first build" : "API unreachable";
    badge.title = error.message;
    return;
  }
  badge.title = "seconds from the newest tick's arrival on the stream to now";
  if (lagSeconds === null) {
    badge.className = "badge neutral";
    badge.textContent = "no ticks yet";
    return;
  }
  badge.className = `badge ${lagSeconds <= 30 ? "ok" : lagSeconds <= 300 ? "late" : "stale"}`;
  badge.textContent = `${Math.round(lagSeconds).toLocaleString()} s behind stream`;
}

// ---- control ----------------------------------------------------------------------------------

async function redraw() {
  if (state.symbol && (await loadBars())) draw();
}

async function selectSymbol(symbol) {
  if (symbol === state.symbol) return;
  state.symbol = symbol;
  history.replaceState(null, "", `#${encodeURIComponent(symbol)}`);
  document.getElementById("symbol").value = symbol;
  renderQuotes();
  await redraw();
}

async function selectRange(range) {
  state.range = range;
  for (const button of document.querySelectorAll("#ranges button")) {
    button.classList.toggle("active", button.dataset.range === range);
  }
  await redraw();
}

async function poll() {
  try {
    const [quotes, { alerts }] = await Promise.all([
      getJSON("/v1/quotes/latest"),
      getJSON("/v1/alerts?limit=500"),
    ]);
    state.quotes = quotes.quotes;
    renderFreshness(quotes.lag_seconds);
    const alertsKey = alerts.map((a) => a.alert_id).join("|");
    const alertsChanged = alertsKey !== state.alertsKey;
    state.alerts = alerts;
    state.alertsKey = alertsKey;
    if (alertsChanged) renderAlerts();
    if (quotes.snapshot_id !== state.snapshot) {
      state.snapshot = quotes.snapshot_id;
      await loadSymbols();
      renderQuotes();
      await redraw();
    } else {
      renderQuotes();
      if (alertsChanged) draw();
      else drawTitle();
    }
  } catch (error) {
    renderFreshness(null, error);
    console.warn("dashboard update failed:", error.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.getElementById("symbol").addEventListener("change", (e) => selectSymbol(e.target.value));
for (const button of document.querySelectorAll("#ranges button")) {
  button.classList.toggle("active", button.dataset.range === state.range);
  button.addEventListener("click", () => selectRange(button.dataset.range));
}
poll();
