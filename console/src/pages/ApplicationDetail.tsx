// One application: where it runs and how its rollout goes (live), its components,
// instances, events and revisions; scale, restart, roll back and delete for those allowed;
// logs and metrics.

import { useState } from "react";
import { useNavigate, useParams } from "react-router";
import { collection, del, item, update, type ApiObject, type Page } from "../api";
import { Badge, Confirm, ErrorNote } from "../components/Common";
import { LogView } from "../components/LogView";
import { MetricsView } from "../components/MetricsView";
import { age, time } from "../format";
import { useAccess, useGet } from "../hooks";
import { useI18n, type Translate } from "../i18n";
import { CHANGE_CAUSE, phaseOf, phaseTone, type Application, type ApplicationSpec } from "../model";
import { projectPath, useScope } from "../scope";

type Revision = ApiObject<{ application: string; revision: number; template: ApplicationSpec; cause?: string }>;

function instanceState(t: Translate, state: string, ready?: boolean): { tone: "ok" | "warn" | "bad" | "idle"; text: string } {
  switch (state) {
    case "running":
      return ready ? { tone: "ok", text: t("apps.state.running") } : { tone: "warn", text: t("apps.state.notReady") };
    case "pending":
      return { tone: "idle", text: t("apps.state.pending") };
    case "terminating":
      return { tone: "idle", text: t("apps.state.terminating") };
    case "crashLoop":
      return { tone: "bad", text: t("apps.state.crashLoop") };
    case "imagePullError":
      return { tone: "bad", text: t("apps.state.imagePullError") };
    case "oomKilled":
      return { tone: "bad", text: t("apps.state.oomKilled") };
    default:
      return { tone: "bad", text: t("apps.state.exited") };
  }
}

export function ApplicationDetail() {
  const { t } = useI18n();
  const { project = "", name = "" } = useParams();
  const { environment } = useScope();
  const navigate = useNavigate();
  const app = useGet<Application>(item("applications", name, project), 2_000);
  const revisions = useGet<Page<Revision>>(
    collection("applicationrevisions", project, { labelSelector: `flotilla.io/application=${name}`, limit: 100 }),
    10_000,
  );
  const env = app.data?.spec.environment;
  const updateAccess = useAccess("update", "Application", project, env);
  const deleteAccess = useAccess("delete", "Application", project, env);
  const canUpdate = updateAccess ?? false;
  const canDelete = deleteAccess ?? false;
  const [confirm, setConfirm] = useState<null | { message: string; typeToConfirm?: string; run: () => Promise<void> }>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  // Replica counts being edited, for the generation they were started at.
  const [edits, setEdits] = useState<{ generation: number; replicas: Record<string, string> }>({ generation: 0, replicas: {} });
  const [tab, setTab] = useState<"overview" | "logs" | "metrics">("overview");

  const change = async (cause: string, edit: (spec: ApplicationSpec) => void) => {
    setActionError(null);
    try {
      await update<Application>("applications", name, project, (object) => {
        edit(object.spec);
        object.metadata.annotations = { ...(object.metadata.annotations ?? {}), [CHANGE_CAUSE]: cause };
      });
      app.reload();
      revisions.reload();
    } catch (e) {
      setActionError(e);
      throw e;
    }
  };

  if (app.error && !app.data) return <ErrorNote error={app.error} />;
  if (!app.data) return <p>{t("common.loading")}</p>;
  const object = app.data;
  const status = object.status ?? {};
  const phase = phaseOf(status);
  const generation = object.metadata.generation ?? 0;
  const replicas = edits.generation === generation ? edits.replicas : {};
  const setReplicas = (next: Record<string, string>) => setEdits({ generation, replicas: next });
  const history = [...(revisions.data?.items ?? [])]
    .filter((r) => r.spec.application === name)
    .sort((a, b) => b.spec.revision - a.spec.revision);

  return (
    <section>
      <div className="title-row">
        <h1 data-testid="app-name">{name}</h1>
        <Badge tone={phaseTone(phase)} testId="app-phase">
          {t(`apps.phase.${phase}`)}
        </Badge>
        <div className="actions" data-testid="actions" data-ready={updateAccess !== undefined && deleteAccess !== undefined}>
          {canUpdate && (
            <button
              type="button"
              data-testid="restart"
              onClick={() =>
                setConfirm({
                  message: t("apps.restartConfirm", { name }),
                  run: () => change("restart", (spec) => (spec.restartedAt = new Date().toISOString().replace(/\.\d+Z$/, "Z"))),
                })
              }
            >
              {t("apps.restart")}
            </button>
          )}
          {canDelete && (
            <button
              type="button"
              className="danger"
              data-testid="delete"
              onClick={() =>
                setConfirm({
                  message: t("apps.deleteConfirm", { name }),
                  typeToConfirm: name,
                  run: async () => {
                    await del(item("applications", name, project));
                    navigate(projectPath(project, "applications", environment));
                  },
                })
              }
            >
              {t("common.delete")}
            </button>
          )}
        </div>
      </div>
      <dl className="facts">
        <dt>{t("apps.environment")}</dt>
        <dd>{object.spec.environment}</dd>
        <dt>{t("apps.cluster")}</dt>
        <dd>{status.cluster ?? "-"}</dd>
        <dt>{t("apps.revision")}</dt>
        <dd data-testid="app-revision">{generation}</dd>
      </dl>
      <ErrorNote error={actionError} />
      {(status.warnings ?? []).length > 0 && (
        <div className="warn">
          <strong>{t("apps.warnings")}</strong>
          <ul>
            {status.warnings?.map((w) => (
              <li key={w}>{w}</li>
            ))}
          </ul>
        </div>
      )}
      <div className="tabs">
        {(["overview", "logs", "metrics"] as const).map((name) => (
          <button key={name} type="button" className={tab === name ? "active" : ""} onClick={() => setTab(name)} data-testid={`tab-${name}`}>
            {name === "overview" ? t("apps.components") : name === "logs" ? t("apps.logs") : t("apps.metrics")}
          </button>
        ))}
      </div>
      {tab === "logs" && <LogView project={project} application={name} />}
      {tab === "metrics" && <MetricsView project={project} application={name} />}
      {tab === "overview" && (
        <>
          <table data-testid="components">
            <thead>
              <tr>
                <th>{t("apps.component")}</th>
                <th>{t("apps.image")}</th>
                <th>{t("apps.desired")}</th>
                <th>{t("apps.updated")}</th>
                <th>{t("apps.ready")}</th>
                <th>{t("common.status")}</th>
                {canUpdate && <th>{t("apps.scale")}</th>}
              </tr>
            </thead>
            <tbody>
              {object.spec.components.map((component) => {
                const observed = status.components?.find((c) => c.name === component.name);
                const cphase = observed?.phase ?? "unknown";
                return (
                  <tr key={component.name} data-testid={`component-${component.name}`}>
                    <td>{component.name}</td>
                    <td className="mono">{component.image}</td>
                    <td>{observed?.desired ?? component.replicas ?? 1}</td>
                    <td>{observed?.updated ?? "-"}</td>
                    <td data-testid={`ready-${component.name}`}>{observed?.ready ?? "-"}</td>
                    <td>
                      <Badge tone={phaseTone(cphase)}>{t(`apps.phase.${cphase}`)}</Badge> {observed?.message}
                    </td>
                    {canUpdate && (
                      <td>
                        <input
                          className="narrow"
                          type="number"
                          min={0}
                          aria-label={t("apps.replicas")}
                          data-testid={`replicas-${component.name}`}
                          value={replicas[component.name] ?? String(component.replicas ?? 1)}
                          onChange={(e) => setReplicas({ ...replicas, [component.name]: e.target.value })}
                        />
                        <button
                          type="button"
                          data-testid={`scale-${component.name}`}
                          onClick={() => {
                            const wanted = Number(replicas[component.name] ?? component.replicas ?? 1);
                            void change(`scale ${component.name} to ${wanted}`, (spec) => {
                              const target = spec.components.find((c) => c.name === component.name);
                              if (target) target.replicas = wanted;
                            }).catch(() => undefined);
                          }}
                        >
                          {t("apps.scale")}
                        </button>
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>

          <h2>{t("apps.instances")}</h2>
          <table data-testid="instances">
            <thead>
              <tr>
                <th>{t("apps.instance")}</th>
                <th>{t("apps.component")}</th>
                <th>{t("apps.revision")}</th>
                <th>{t("apps.state")}</th>
                <th>{t("apps.address")}</th>
                <th>{t("apps.restarts")}</th>
                <th>{t("common.age")}</th>
              </tr>
            </thead>
            <tbody>
              {(status.instances ?? []).map((instance) => {
                const state = instanceState(t, instance.state, instance.ready);
                return (
                  <tr key={instance.name}>
                    <td className="mono">{instance.name}</td>
                    <td>{instance.component}</td>
                    <td>{instance.revision}</td>
                    <td>
                      <Badge tone={state.tone}>{state.text}</Badge> {instance.reason ?? instance.message ?? ""}
                    </td>
                    <td className="mono">{instance.ip ?? "-"}</td>
                    <td>{instance.restarts}</td>
                    <td>{age(instance.startedMicros)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>

          <h2>{t("apps.revisions")}</h2>
          <table data-testid="revisions">
            <thead>
              <tr>
                <th>{t("apps.revision")}</th>
                <th>{t("apps.image")}</th>
                <th>{t("apps.cause")}</th>
                <th>{t("common.age")}</th>
                {canUpdate && <th />}
              </tr>
            </thead>
            <tbody>
              {history.map((revision) => (
                <tr key={revision.spec.revision} data-testid={`revision-${revision.spec.revision}`}>
                  <td>
                    {revision.spec.revision}
                    {revision.spec.revision === generation ? ` (${t("apps.current")})` : ""}
                  </td>
                  <td className="mono">{revision.spec.template.components.map((c) => `${c.name}=${c.image}`).join(", ")}</td>
                  <td>{revision.spec.cause ?? ""}</td>
                  <td>{age(revision.metadata.creationTimestamp)}</td>
                  {canUpdate && (
                    <td>
                      {revision.spec.revision !== generation && (
                        <button
                          type="button"
                          data-testid={`rollback-${revision.spec.revision}`}
                          onClick={() =>
                            setConfirm({
                              message: t("apps.rollbackTo", { revision: revision.spec.revision }),
                              run: () =>
                                change(`rollback to revision ${revision.spec.revision}`, (spec) => {
                                  for (const key of Object.keys(spec)) delete spec[key];
                                  Object.assign(spec, structuredClone(revision.spec.template));
                                }),
                            })
                          }
                        >
                          {t("apps.rollback")}
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>

          <h2>{t("apps.events")}</h2>
          <table data-testid="events">
            <thead>
              <tr>
                <th>{t("apps.time")}</th>
                <th>{t("apps.type")}</th>
                <th>{t("apps.reason")}</th>
                <th>{t("apps.component")}</th>
                <th>{t("apps.message")}</th>
              </tr>
            </thead>
            <tbody>
              {[...(status.events ?? [])].reverse().map((event, index) => (
                <tr key={`${event.timeMicros}-${index}`}>
                  <td>{time(event.timeMicros)}</td>
                  <td>
                    <Badge tone={event.type === "warning" ? "bad" : "idle"}>{event.type === "warning" ? t("apps.event.warning") : t("apps.event.normal")}</Badge>
                  </td>
                  <td>{event.reason}</td>
                  <td>{event.component ?? ""}</td>
                  <td>{event.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {confirm && (
        <Confirm
          message={confirm.message}
          typeToConfirm={confirm.typeToConfirm}
          onCancel={() => setConfirm(null)}
          onConfirm={async () => {
            await confirm.run();
            setConfirm(null);
          }}
        />
      )}
    </section>
  );
}
