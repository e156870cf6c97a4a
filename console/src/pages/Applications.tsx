// The applications of a project (and environment): paged, searched and filtered by the
// server, so it stays quick at thousands of applications.

import { useEffect, useState } from "react";
import { Link, useParams } from "react-router";
import { collection, type Page } from "../api";
import { Badge, ErrorNote, Pager, usePager } from "../components/Common";
import { age } from "../format";
import { useCan, useGet } from "../hooks";
import { useI18n } from "../i18n";
import { phaseOf, phaseTone, readyCounts, type Application } from "../model";
import { projectPath, useScope } from "../scope";

const PAGE = 50;

export function Applications() {
  const { t } = useI18n();
  const { project = "" } = useParams();
  const { environment } = useScope();
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const pager = usePager();
  const canCreate = useCan("create", "Application", project, environment || undefined);

  // Search as the user types, once they pause.
  useEffect(() => {
    const timer = setTimeout(() => setQuery(search.trim()), 150);
    return () => clearTimeout(timer);
  }, [search]);
  const { reset } = pager;
  useEffect(() => reset(), [query, environment, project, reset]);

  const path = collection("applications", project, {
    limit: PAGE,
    q: query,
    labelSelector: environment ? `flotilla.io/environment=${environment}` : undefined,
    continue: pager.current,
  });
  const { data, error, loading } = useGet<Page<Application>>(path, 5_000);

  return (
    <section>
      <div className="title-row">
        <h1>{t("apps.title")}</h1>
        {canCreate && (
          <Link className="button" to={projectPath(project, "applications/new", environment)} data-testid="new-application">
            {t("apps.new")}
          </Link>
        )}
      </div>
      <input className="search" placeholder={t("common.search")} value={search} onChange={(e) => setSearch(e.target.value)} data-testid="search" />
      <ErrorNote error={error} />
      <table data-testid="applications" aria-busy={loading}>
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("apps.environment")}</th>
            <th>{t("apps.cluster")}</th>
            <th>{t("apps.revision")}</th>
            <th>{t("common.status")}</th>
            <th>{t("apps.ready")}</th>
            <th>{t("common.age")}</th>
          </tr>
        </thead>
        <tbody>
          {data?.items.map((app) => {
            const phase = phaseOf(app.status);
            return (
              <tr key={app.metadata.name} data-testid={`app-row-${app.metadata.name}`}>
                <td>
                  <Link to={projectPath(project, `applications/${encodeURIComponent(app.metadata.name)}`, environment)}>{app.metadata.name}</Link>
                </td>
                <td>{app.spec.environment}</td>
                <td>{app.status?.cluster ?? "-"}</td>
                <td>{app.metadata.generation ?? "-"}</td>
                <td>
                  <Badge tone={phaseTone(phase)}>{t(`apps.phase.${phase}`)}</Badge>
                </td>
                <td>{readyCounts(app.status)}</td>
                <td>{age(app.metadata.creationTimestamp)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {data && data.items.length === 0 && <p>{t("common.none")}</p>}
      <Pager
        page={pager.page}
        hasNext={!!data?.metadata.continue}
        onNext={() => data?.metadata.continue && pager.next(data.metadata.continue)}
        onPrevious={pager.previous}
      />
    </section>
  );
}
