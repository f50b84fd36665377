/** @jsxImportSource hono/jsx */
/**
 * Server-rendered SVG line charts for the device page (telemetry over time). No client library and no inline
 * style: colours come from the stylesheet by series class, so the strict CSP (HW-UI-3) needs no 'unsafe-inline'.
 * Own code because a chart here is ~40 lines of SVG; a client charting library would need script and a bundle.
 */
export interface Series {
  label: string;
  /** [time ms, value] pairs, oldest first. */
  points: [number, number][];
}

const WIDTH = 640;
const HEIGHT = 160;
const PAD = { left: 48, right: 8, top: 8, bottom: 20 };

function formatValue(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** A line chart of `series` sharing one time and one value axis; "no samples" when there is nothing to draw. */
export function LineChart(props: { title: string; unit: string; series: Series[] }) {
  const all = props.series.flatMap((s) => s.points);
  if (all.length === 0) {
    return (
      <figure class="chart">
        <figcaption>{props.title}</figcaption>
        <p class="muted">no samples yet</p>
      </figure>
    );
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const vMin = Math.min(0, ...all.map((p) => p[1]));
  const vMax = Math.max(...all.map((p) => p[1]), vMin + 1);
  const x = (t: number) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (v: number) => HEIGHT - PAD.bottom - ((v - vMin) / (vMax - vMin)) * (HEIGHT - PAD.top - PAD.bottom);
  return (
    <figure class="chart">
      <figcaption>
        {props.title} ({props.unit})
        {props.series.map((s, i) => (
          <span class={`legend series-${i % 8}`}>{s.label}</span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={props.title} width={WIDTH} height={HEIGHT}>
        <line class="axis" x1={PAD.left} y1={HEIGHT - PAD.bottom} x2={WIDTH - PAD.right} y2={HEIGHT - PAD.bottom} />
        <line class="axis" x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={HEIGHT - PAD.bottom} />
        <text class="tick" x={PAD.left - 4} y={PAD.top + 8} text-anchor="end">{formatValue(vMax)}</text>
        <text class="tick" x={PAD.left - 4} y={HEIGHT - PAD.bottom} text-anchor="end">{formatValue(vMin)}</text>
        <text class="tick" x={PAD.left} y={HEIGHT - 4}>{new Date(t0).toISOString().slice(11, 19)}</text>
        <text class="tick" x={WIDTH - PAD.right} y={HEIGHT - 4} text-anchor="end">{new Date(t1).toISOString().slice(11, 19)}</text>
        {props.series.map((s, i) => (
          <polyline class={`line series-${i % 8}`} fill="none" points={s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ")} />
        ))}
      </svg>
    </figure>
  );
}
