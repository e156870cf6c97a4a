// The audit trail: searched and filtered by the server (user, action, kind, project, name,
// outcome, time), paged by cursor, each record with its before/after diff; the same query
// exported as CSV.

import { useState } from "react";
import { ErrorNote } from "../components/Common";
import { useGet } from "../hooks";
import { useI18n } from "../i18n";

interface Change {
  path: string;
  before?: unknown;
  after?: unknown;
}

interface AuditRecord {
  seq: number;
  time: string;
  user: string;
  auth: string;
  sourceIp: string;
  userAgent: string;
  action: string;
  kind?: string;
  project?: string;
  name?: string;
  outcome: string;
  message?: string;
  before?: unknown;
  after?: unknown;
  changes?: Change[];
}

const FILTERS = ["user", "action", "kind", "project", "name", "outcome"] as const;
type Filters = Record<(typeof FILTERS)[number] | "since", string>;

function show(value: unknown): string {
  if (value === undefined) return "∅";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function Audit() {
  const { t } = useI18n();
  const [draft, setDraft] = useState<Filters>({ user: "", action: "", kind: "", project: "", name: "", outcome: "", since: "7d" });
  const [filters, setFilters] = useState<Filters>(draft);
  const [cursors, setCursors] = useState<(number | undefined)[]>([undefined]);
  const [selected, setSelected] = useState<AuditRecord | null>(null);
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
  const cursor = cursors[cursors.length - 1];
  const page = new URLSearchParams(query);
  page.set("limit", "50");
  if (cursor !== undefined) page.set("cursor", String(cursor));
  const { data, error } = useGet<{ items: AuditRecord[]; nextCursor?: number | null }>(`/api/v1/audit?${page}`);

  return (
    <section>
      <h1>{t("audit.title")}</h1>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters(draft);
          setCursors([undefined]);
          setSelected(null);
        }}
      >
        {FILTERS.map((key) => (
          <label key={key}>
            {t(`audit.${key}`)}
            <input value={draft[key]} onChange={(e) => setDraft({ ...draft, [key]: e.target.value })} data-testid={`audit-${key}`} />
          </label>
        ))}
        <label>
          {t("audit.since")}
          <select value={draft.since} onChange={(e) => setDraft({ ...draft, since: e.target.value })}>
            <option value="1h">1h</option>
            <option value="24h">24h</option>
            <option value="7d">7d</option>
            <option value="30d">30d</option>
            <option value="">{t("audit.always")}</option>
          </select>
        </label>
        <button type="submit" data-testid="audit-search">
          {t("audit.search")}
        </button>
        <a className="button" href={`/api/v1/audit/export?${query}`} download data-testid="audit-export">
          {t("audit.export")}
        </a>
      </form>
      <ErrorNote error={error} />
      <div className="split">
        <table data-testid="audit-records">
          <thead>
            <tr>
              <th>{t("apps.time")}</th>
              <th>{t("audit.user")}</th>
              <th>{t("audit.ip")}</th>
              <th>{t("audit.action")}</th>
              <th>{t("audit.object")}</th>
              <th>{t("audit.outcome")}</th>
            </tr>
          </thead>
          <tbody>
            {data?.items.map((record) => (
              <tr
                key={record.seq}
                className={selected?.seq === record.seq ? "selected clickable" : "clickable"}
                onClick={() => setSelected(record)}
                data-testid={`audit-${record.seq}`}
              >
                <td>{new Date(record.time).toLocaleString()}</td>
                <td>{record.user}</td>
                <td className="mono">{record.sourceIp}</td>
                <td>{record.action}</td>
                <td>
                  {record.kind} {record.project ? `${record.project}/` : ""}
                  {record.name}
                </td>
                <td>{record.outcome}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {selected && (
          <aside className="detail" data-testid="audit-detail">
            <h2>
              #{selected.seq} {selected.action} {selected.kind} {selected.name}
            </h2>
            <p className="dim">
              {selected.user} · {selected.sourceIp} · {selected.userAgent} · {new Date(selected.time).toLocaleString()}
            </p>
            {selected.message && <p>{selected.message}</p>}
            <h3>{t("audit.changes")}</h3>
            <table className="diff" data-testid="audit-diff">
              <thead>
                <tr>
                  <th>{t("audit.path")}</th>
                  <th>{t("audit.before")}</th>
                  <th>{t("audit.after")}</th>
                </tr>
              </thead>
              <tbody>
                {(selected.changes ?? []).map((change) => (
                  <tr key={change.path}>
                    <td className="mono">{change.path}</td>
                    <td className="mono removed">{show(change.before)}</td>
                    <td className="mono added">{show(change.after)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </aside>
        )}
      </div>
      <div className="pager">
        <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors((list) => list.slice(0, -1))}>
          {t("common.previous")}
        </button>
        <span>{cursors.length}</span>
        <button
          type="button"
          disabled={!data?.nextCursor}
          onClick={() => data?.nextCursor && setCursors((list) => [...list, data.nextCursor ?? undefined])}
        >
          {t("common.next")}
        </button>
      </div>
    </section>
  );
}
