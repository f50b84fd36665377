/** @jsxImportSource hono/jsx */
/**
 * The dashboard's page bodies. Each takes what the route read through the API's service functions and the set of
 * actions the signed-in role may take (decided from the API's own route roles, HW-UI-4): a button the role may not
 * use is not rendered, and the plane refuses it anyway.
 */
import type { RolloutView } from "../rollouts/types.js";
import type { ApiTokenView, AttestationResult, AuditEntry, CommandView, DeviceView, ReferenceValueSet, TransitionView } from "../service/index.js";
import { LineChart, type Series } from "./charts.js";
import { ActionForm, State, json, when } from "./layout.js";
import type { FleetCounts, TelemetrySample } from "./queries.js";

const ENROLLMENT = ["pending", "accepted", "rejected", "revoked"] as const;
const APPRAISAL = ["unknown", "trusted", "warning", "contraindicated", "stale"] as const;
const CONTAINMENT = ["none", "quarantine_requested", "quarantined", "release_requested"] as const;

export interface FleetQuery {
  enrollment?: string | undefined;
  appraisal?: string | undefined;
  containment?: string | undefined;
  model?: string | undefined;
  search?: string | undefined;
  offset: number;
  limit: number;
}

/** A table with one header row naming `columns`; `children` are its body rows (`<tr>`). */
function Table(props: { id?: string; columns: readonly string[]; children?: unknown }) {
  return (
    <table id={props.id}>
      <thead>
        <tr>
          {props.columns.map((column) => (
            <th>{column}</th>
          ))}
        </tr>
      </thead>
      <tbody>{props.children}</tbody>
    </table>
  );
}

function fleetHref(query: FleetQuery, change: Partial<FleetQuery>): string {
  const merged = { ...query, ...change };
  const params = new URLSearchParams();
  for (const key of ["enrollment", "appraisal", "containment", "model", "search"] as const) {
    const value = merged[key];
    if (value) params.set(key, value);
  }
  if (merged.offset > 0) params.set("offset", String(merged.offset));
  const text = params.toString();
  return text ? `/ui/?${text}` : "/ui/";
}

function CountCard(props: { title: string; field: "enrollment" | "appraisal" | "containment"; states: readonly string[]; counts: FleetCounts; query: FleetQuery }) {
  return (
    <section class="card" data-counts={props.field}>
      <h3>{props.title}</h3>
      <dl>
        {props.states.map((state) => (
          <>
            <dt>
              <a href={fleetHref(props.query, { [props.field]: state, offset: 0 })}>{state}</a>
            </dt>
            <dd data-count={state}>{props.counts[props.field][state] ?? 0}</dd>
          </>
        ))}
      </dl>
    </section>
  );
}

function Select(props: { name: string; values: readonly string[]; selected: string | undefined }) {
  return (
    <label>
      {props.name}
      <select name={props.name}>
        <option value="">any</option>
        {props.values.map((v) => (
          <option value={v} selected={props.selected === v}>
            {v}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The first two cells of a device row: its id linking to its page, and its model and firmware. */
function DeviceCells(props: { device: DeviceView }) {
  const d = props.device;
  return (
    <>
      <td class="mono">
        <a href={`/ui/devices/${encodeURIComponent(d.deviceId)}`}>{d.deviceId}</a>
      </td>
      <td>
        {d.model} {d.firmwareVersion}
      </td>
    </>
  );
}

export function DeviceRows(props: { devices: DeviceView[] }) {
  return (
    <Table id="devices" columns={["device", "model / firmware", "enrollment", "appraisal", "containment", "connected", "last seen", "active pool", "hashrate (GH/s)"]}>
      {props.devices.map((d) => (
        <tr data-device={d.deviceId}>
          <DeviceCells device={d} />
          <td>
            <State value={d.enrollment} field="enrollment" />
          </td>
          <td>
            <State value={d.appraisal} field="appraisal" />
          </td>
          <td>
            <State value={d.containment} field="containment" />
          </td>
          <td>{d.connected ? "yes" : "no"}</td>
          <td>{when(d.lastSeenAt)}</td>
          <td class="mono">{d.telemetry?.activePool ?? ""}</td>
          <td>{d.telemetry?.hashrateGhs === undefined ? "" : d.telemetry.hashrateGhs.toFixed(1)}</td>
        </tr>
      ))}
    </Table>
  );
}

export function FleetPage(props: { counts: FleetCounts; devices: DeviceView[]; query: FleetQuery; hasMore: boolean }) {
  const { query } = props;
  return (
    <>
      <div class="cards">
        <section class="card">
          <h3>devices</h3>
          <dl>
            <dt>total</dt>
            <dd data-count="total">{props.counts.total}</dd>
          </dl>
        </section>
        <CountCard title="enrollment" field="enrollment" states={ENROLLMENT} counts={props.counts} query={query} />
        <CountCard title="appraisal" field="appraisal" states={APPRAISAL} counts={props.counts} query={query} />
        <CountCard title="containment" field="containment" states={CONTAINMENT} counts={props.counts} query={query} />
      </div>
      <ul id="live-log" aria-live="polite"></ul>
      <form class="filters" method="get" action="/ui/">
        <label>
          search
          <input name="search" value={query.search ?? ""} maxlength={128} placeholder="id, model, firmware, pool" />
        </label>
        <Select name="enrollment" values={ENROLLMENT} selected={query.enrollment} />
        <Select name="appraisal" values={APPRAISAL} selected={query.appraisal} />
        <Select name="containment" values={CONTAINMENT} selected={query.containment} />
        <label>
          model
          <input name="model" value={query.model ?? ""} maxlength={128} />
        </label>
        <button type="submit">Filter</button>
        <a href="/ui/">clear</a>
      </form>
      <DeviceRows devices={props.devices} />
      <div class="pager">
        {query.offset > 0 && <a href={fleetHref(query, { offset: Math.max(0, query.offset - query.limit) })}>← previous</a>}
        <span class="muted">
          {props.devices.length === 0 ? "no devices" : `devices ${query.offset + 1}–${query.offset + props.devices.length}`}
        </span>
        {props.hasMore && <a href={fleetHref(query, { offset: query.offset + query.limit })}>next →</a>}
      </div>
    </>
  );
}

function ClaimVector(props: { result: AttestationResult | null }) {
  const result = props.result;
  if (!result) return <p class="muted">no attestation result yet</p>;
  return (
    <>
      <p>
        <State value={result.status} /> {result.summary} <span class="muted">(evidence seq {result.evidenceSeq}, appraised {when(result.appraisedAt)}, reference {result.referenceId ?? "none"})</span>
      </p>
      <Table id="claims" columns={["claim", "tier"]}>
        {Object.entries(result.trustworthiness).map(([claim, tier]) => (
          <tr>
            <td>{claim}</td>
            <td>
              <State value={String(tier)} />
            </td>
          </tr>
        ))}
      </Table>
      <h2>Differences ({result.differences.length})</h2>
      {result.differences.length === 0 ? (
        <p class="muted">none: every measurement matches the reference values</p>
      ) : (
        <Table id="differences" columns={["path", "claim", "kind", "expected", "seen"]}>
          {result.differences.map((d) => (
            <tr>
              <td class="mono">{d.path}</td>
              <td>{d.claim}</td>
              <td>{d.kind}</td>
              <td class="mono">{d.expected ? `sha256 ${d.expected.sha256} (${d.expected.size} B)` : "—"}</td>
              <td class="mono">{d.seen ? `sha256 ${d.seen.sha256} (${d.seen.size} B)` : "—"}</td>
            </tr>
          ))}
        </Table>
      )}
      <h2>Guard findings ({result.findings.length})</h2>
      {result.findings.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <Table id="findings" columns={["guard", "claim", "tier", "subject", "message", "expected", "seen"]}>
          {result.findings.map((f) => (
            <tr>
              <td>{f.guard}</td>
              <td>{f.claim}</td>
              <td>
                <State value={f.tier} />
              </td>
              <td class="mono">{f.subject}</td>
              <td>{f.message}</td>
              <td class="mono">{json(f.expected)}</td>
              <td class="mono">{json(f.seen)}</td>
            </tr>
          ))}
        </Table>
      )}
    </>
  );
}

function charts(samples: TelemetrySample[]) {
  const series = (label: string, pick: (s: TelemetrySample) => number | null | undefined): Series => ({
    label,
    points: samples.flatMap((s) => {
      const v = pick(s);
      return typeof v === "number" && Number.isFinite(v) ? [[s.at.getTime(), v] as [number, number]] : [];
    }),
  });
  const width = (pick: (s: TelemetrySample) => number[]) => Math.max(0, ...samples.map((s) => pick(s).length));
  return {
    hashrate: [series("hashrate", (s) => s.hashrateGhs)],
    temperatures: Array.from({ length: width((s) => s.temperaturesC) }, (_, i) => series(`sensor ${i + 1}`, (s) => s.temperaturesC[i])),
    fans: Array.from({ length: width((s) => s.fanRpm) }, (_, i) => series(`fan ${i + 1}`, (s) => s.fanRpm[i])),
  };
}

export interface DeviceAction {
  /** Path segment under /ui/devices/{id}/. */
  name: string;
  label: string;
  reason: boolean;
  danger?: boolean;
}

export function DevicePage(props: {
  device: DeviceView;
  history: TransitionView[];
  commands: CommandView[];
  samples: TelemetrySample[];
  actions: DeviceAction[];
  csrf: string;
}) {
  const d = props.device;
  const c = charts(props.samples);
  return (
    <div data-device={d.deviceId}>
      <p>
        enrollment <State value={d.enrollment} field="enrollment" /> · appraisal <State value={d.appraisal} field="appraisal" /> · containment{" "}
        <State value={d.containment} field="containment" /> · {d.connected ? "connected" : "not connected"} · last seen {when(d.lastSeenAt)}
      </p>
      <p class="muted">
        {d.model} firmware {d.firmwareVersion || "?"} · agent {d.agentVersion || "?"} · pool {d.telemetry?.activePool ?? "?"} · key <span class="mono">{d.publicKey}</span>
      </p>
      <ul id="live-log" aria-live="polite"></ul>
      <h2>Actions</h2>
      {props.actions.length === 0 ? (
        <p class="muted" id="no-actions">
          your role may not change this device
        </p>
      ) : (
        <div id="actions">
          {props.actions.map((a) => (
            <ActionForm
              action={`/ui/devices/${encodeURIComponent(d.deviceId)}/${a.name}`}
              csrf={props.csrf}
              label={a.label}
              confirm={`${a.label} device ${d.deviceId}?`}
              reason={a.reason}
              danger={a.danger ?? false}
            />
          ))}
        </div>
      )}
      <h2>Attestation result</h2>
      <ClaimVector result={d.lastAppraisal} />
      <h2>Telemetry</h2>
      <LineChart title="Hashrate" unit="GH/s" series={c.hashrate} />
      <LineChart title="Temperatures" unit="°C" series={c.temperatures} />
      <LineChart title="Fans" unit="RPM" series={c.fans} />
      <h2>History</h2>
      <Table id="history" columns={["at", "machine", "from → to", "reason", "by"]}>
        {props.history.map((t) => (
          <tr>
            <td>{when(t.at)}</td>
            <td>{t.machine}</td>
            <td>
              {t.from} → <State value={t.to} />
            </td>
            <td>{t.reason}</td>
            <td>
              {t.actor.kind} {t.actor.id}
            </td>
          </tr>
        ))}
      </Table>
      <h2>Commands</h2>
      <Table id="commands" columns={["seq", "action", "status", "issued", "acked", "failure"]}>
        {props.commands.map((cmd) => (
          <tr>
            <td>{cmd.seq}</td>
            <td>{cmd.action}</td>
            <td>
              <State value={cmd.status} />
            </td>
            <td>{when(cmd.issuedAt)}</td>
            <td>{cmd.ackedAt ? when(cmd.ackedAt) : "—"}</td>
            <td>{cmd.reason ?? ""}</td>
          </tr>
        ))}
      </Table>
    </div>
  );
}

export function PendingPage(props: { devices: DeviceView[]; csrf: string; canAccept: boolean; canReject: boolean }) {
  if (props.devices.length === 0) return <p class="muted">no device waits for an operator</p>;
  return (
    <Table id="pending" columns={["device", "model / firmware", "asked", "key", "decision"]}>
      {props.devices.map((d) => (
        <tr data-device={d.deviceId}>
          <DeviceCells device={d} />
          <td>{when(d.createdAt)}</td>
          <td class="mono">{d.publicKey}</td>
          <td>
            {props.canAccept && <ActionForm action={`/ui/devices/${encodeURIComponent(d.deviceId)}/accept`} csrf={props.csrf} label="Accept" confirm={`Accept ${d.deviceId}?`} reason />}
            {props.canReject && (
              <ActionForm action={`/ui/devices/${encodeURIComponent(d.deviceId)}/reject`} csrf={props.csrf} label="Reject" confirm={`Reject ${d.deviceId}?`} reason danger />
            )}
          </td>
        </tr>
      ))}
    </Table>
  );
}

export function ReferenceValuesPage(props: { sets: ReferenceValueSet[]; csrf: string; canApprove: boolean }) {
  if (props.sets.length === 0) return <p class="muted">no reference values yet</p>;
  return (
    <Table id="reference-values" columns={["id", "model / firmware", "status", "source", "measurements", "created", "approved"]}>
      {props.sets.map((set) => (
        <tr>
          <td class="mono">{set.id}</td>
          <td>
            {set.model} {set.firmwareVersion}
          </td>
          <td>
            <State value={set.status} />
          </td>
          <td>
            {set.source}
            {set.capturedFrom ? ` from ${set.capturedFrom}` : ""}
          </td>
          <td>
            <details>
              <summary>{set.measurements.length} paths</summary>
              <ul class="mono">
                {set.measurements.map((m) => (
                  <li>
                    {m.path} {m.sha256} ({m.size} B)
                  </li>
                ))}
              </ul>
            </details>
          </td>
          <td>{when(set.createdAt)}</td>
          <td>
            {set.approvedAt ? `${when(set.approvedAt)} by ${set.approvedBy ?? "?"}` : ""}
            {set.status === "proposed" && props.canApprove && (
              <ActionForm action={`/ui/reference-values/${encodeURIComponent(set.id)}/approve`} csrf={props.csrf} label="Approve" confirm={`Approve ${set.id} as the reference for ${set.model} ${set.firmwareVersion}?`} />
            )}
          </td>
        </tr>
      ))}
    </Table>
  );
}

export function PoliciesPage(props: { lists: { kind: string; policies: { id: string; scope: unknown; version: number; updatedAt: string }[]; builtInDefault: unknown }[]; csrf: string; canEdit: boolean; draft?: { kind: string; text: string } | undefined }) {
  return (
    <>
      {props.lists.map((list) => (
        <section>
          <h2>{list.kind}</h2>
          <Table columns={["id", "scope", "version", "updated", "body"]}>
            {list.policies.map((p) => (
              <tr>
                <td class="mono">{p.id}</td>
                <td class="mono">{json(p.scope)}</td>
                <td>{p.version}</td>
                <td>{when(p.updatedAt)}</td>
                <td class="mono">{json(Object.fromEntries(Object.entries(p).filter(([k]) => !["id", "scope", "version", "createdAt", "updatedAt", "updatedBy", "kind"].includes(k))))}</td>
              </tr>
            ))}
          </Table>
          {list.builtInDefault !== null && <p class="muted">built-in default where none is stored: {json(list.builtInDefault)}</p>}
          {props.canEdit && (
            <ActionForm action={`/ui/policies/${list.kind}`} csrf={props.csrf} label={`Save ${list.kind} policy`} confirm={`Store this ${list.kind} policy and send it to the affected devices?`}>
              <textarea name="body" aria-label={`${list.kind} policy JSON`} required>
                {props.draft?.kind === list.kind ? props.draft.text : json(list.policies[0] ? { scope: list.policies[0].scope, ...Object.fromEntries(Object.entries(list.policies[0]).filter(([k]) => !["id", "scope", "version", "createdAt", "updatedAt", "updatedBy", "kind"].includes(k))) } : (list.builtInDefault ?? {}))}
              </textarea>
            </ActionForm>
          )}
        </section>
      ))}
    </>
  );
}

export function RolloutsPage(props: { targets: { name: string; version?: string }[]; rollouts: RolloutView[]; csrf: string; canControl: boolean }) {
  return (
    <>
      <h2>Releases</h2>
      {props.targets.length === 0 ? (
        <p class="muted">no published release</p>
      ) : (
        <ul class="mono">
          {props.targets.map((t) => (
            <li>
              {t.name} {t.version ?? ""}
            </li>
          ))}
        </ul>
      )}
      <h2>Rollouts</h2>
      {props.rollouts.length === 0 ? (
        <p class="muted">no rollout yet</p>
      ) : (
        props.rollouts.map((r) => (
          <section class="card" data-rollout={r.id}>
            <h3>
              {r.id} · {r.targetName} {r.version} · <State value={r.state} /> · group {r.currentGroup + 1} of {r.groupStatus.length}
            </h3>
            {r.reason && <p>{r.reason}</p>}
            <Table columns={["group", "progress", "waiting", "in progress", "succeeded", "failed", "cancelled"]}>
              {r.groupStatus.map((g) => (
                <tr>
                  <td>{g.index + 1}</td>
                  <td>
                    <progress max={Math.max(1, g.size)} value={g.succeeded + g.failed + g.cancelled}></progress>
                  </td>
                  <td>{g.waiting}</td>
                  <td>{g.inProgress}</td>
                  <td>{g.succeeded}</td>
                  <td>{g.failed}</td>
                  <td>{g.cancelled}</td>
                </tr>
              ))}
            </Table>
            {props.canControl && (
              <>
                <ActionForm action={`/ui/rollouts/${encodeURIComponent(r.id)}/pause`} csrf={props.csrf} label="Pause" confirm={`Pause rollout ${r.id}?`} reason />
                <ActionForm action={`/ui/rollouts/${encodeURIComponent(r.id)}/resume`} csrf={props.csrf} label="Resume" confirm={`Resume rollout ${r.id}?`} />
                <ActionForm action={`/ui/rollouts/${encodeURIComponent(r.id)}/cancel`} csrf={props.csrf} label="Cancel" confirm={`Cancel rollout ${r.id}: no further update commands?`} reason danger />
              </>
            )}
          </section>
        ))
      )}
    </>
  );
}

export function AuditPage(props: { entries: AuditEntry[]; offset: number; limit: number }) {
  return (
    <>
      <Table id="audit" columns={["at", "actor", "action", "target", "detail"]}>
        {props.entries.map((e) => (
          <tr>
            <td>{when(e.at)}</td>
            <td>
              {e.actor.kind} {e.actor.id}
              {e.actor.role ? ` (${e.actor.role})` : ""}
            </td>
            <td>{e.action}</td>
            <td class="mono">{e.target ?? ""}</td>
            <td class="mono">{json(e.detail)}</td>
          </tr>
        ))}
      </Table>
      <div class="pager">
        {props.offset > 0 && <a href={`/ui/audit?offset=${Math.max(0, props.offset - props.limit)}`}>← newer</a>}
        {props.entries.length === props.limit && <a href={`/ui/audit?offset=${props.offset + props.limit}`}>older →</a>}
      </div>
    </>
  );
}

export function TokensPage(props: { tokens: ApiTokenView[]; csrf: string; created?: { id: string; token: string; role: string } | undefined }) {
  return (
    <>
      {props.created && (
        <p class="notice" id="created-token">
          Token {props.created.id} ({props.created.role}) created. Copy it now, it is not shown again: <span class="mono">{props.created.token}</span>
        </p>
      )}
      <ActionForm action="/ui/tokens" csrf={props.csrf} label="Create token" confirm="Create this API token?">
        <input name="label" required maxlength={128} placeholder="label" aria-label="token label" />
        <select name="role" aria-label="token role">
          <option value="viewer">viewer</option>
          <option value="operator">operator</option>
          <option value="admin">admin</option>
        </select>
      </ActionForm>
      <Table id="tokens" columns={["id", "label", "role", "status", "created", "expires", "last used", ""]}>
        {props.tokens.map((t) => (
          <tr data-token={t.id}>
            <td class="mono">{t.id}</td>
            <td>{t.label}</td>
            <td>{t.role}</td>
            <td>
              <State value={t.status} />
            </td>
            <td>{when(t.createdAt)}</td>
            <td>{t.expiresAt ? when(t.expiresAt) : "never"}</td>
            <td>{when(t.lastUsedAt)}</td>
            <td>{t.status === "active" && <ActionForm action={`/ui/tokens/${encodeURIComponent(t.id)}/revoke`} csrf={props.csrf} label="Revoke" confirm={`Revoke ${t.id}? Its sessions end too.`} reason danger />}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}

export function LoginPage(props: { error?: string | undefined }) {
  return (
    <form class="login" method="post" action="/ui/login">
      <p>Sign in with an API token (the first admin token is in the plane's data folder, `admin.token`).</p>
      {props.error && (
        <p class="error" role="alert">
          {props.error}
        </p>
      )}
      <label>
        API token
        <input type="password" name="token" required autocomplete="off" maxlength={512} />
      </label>
      <button type="submit">Sign in</button>
    </form>
  );
}
