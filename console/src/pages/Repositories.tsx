// The delivery center's registry: the project's repositories, and per repository its
// versions (tags, digest, size, who pushed it when) with the applications running each.

import { useEffect, useState } from "react";
import { Link, useParams } from "react-router";
import { ErrorNote } from "../components/Common";
import { age, bytes } from "../format";
import { useGet } from "../hooks";
import { useI18n } from "../i18n";
import { projectPath, useScope } from "../scope";

interface Repository {
  name: string;
  project: string;
  manifests: number;
  tags: number;
  updatedAt: string;
}

interface Version {
  digest: string;
  mediaType: string;
  artifactType?: string;
  size: number;
  tags: string[];
  pushedBy?: string;
  pushedAt: string;
  applications: { kind: string; project?: string; name: string; image: string }[];
}

export function Repositories() {
  const { t } = useI18n();
  const { project = "" } = useParams();
  const { environment } = useScope();
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  useEffect(() => {
    const timer = setTimeout(() => setQuery(search.trim()), 150);
    return () => clearTimeout(timer);
  }, [search]);
  const base = `/api/v1/projects/${encodeURIComponent(project)}/repositories`;
  const list = useGet<{ items: Repository[]; continue?: string }>(`${base}?limit=100${query ? `&q=${encodeURIComponent(query)}` : ""}`);
  const inside = selected ? selected.slice(project.length + 1) : null;
  const versions = useGet<{ items: Version[] }>(inside ? `${base}/${encodeURIComponent(inside)}/versions?limit=100` : null);

  return (
    <section>
      <h1>{t("repos.title")}</h1>
      <input className="search" placeholder={t("common.search")} value={search} onChange={(e) => setSearch(e.target.value)} />
      <ErrorNote error={list.error} />
      <div className="split">
        <table data-testid="repositories">
          <thead>
            <tr>
              <th>{t("common.name")}</th>
              <th>{t("repos.versions")}</th>
              <th>{t("repos.tags")}</th>
              <th>{t("repos.updated")}</th>
            </tr>
          </thead>
          <tbody>
            {list.data?.items.map((repository) => (
              <tr
                key={repository.name}
                className={selected === repository.name ? "selected clickable" : "clickable"}
                onClick={() => setSelected(repository.name)}
                data-testid={`repository-${repository.name}`}
              >
                <td className="mono">{repository.name}</td>
                <td>{repository.manifests}</td>
                <td>{repository.tags}</td>
                <td>{age(repository.updatedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {selected && (
          <aside className="detail" data-testid="versions">
            <h2 className="mono">{selected}</h2>
            <ErrorNote error={versions.error} />
            <table>
              <thead>
                <tr>
                  <th>{t("repos.tags")}</th>
                  <th>{t("repos.digest")}</th>
                  <th>{t("repos.size")}</th>
                  <th>{t("repos.pushed")}</th>
                  <th>{t("repos.runningIn")}</th>
                </tr>
              </thead>
              <tbody>
                {versions.data?.items.map((version) => (
                  <tr key={version.digest}>
                    <td>{version.tags.join(", ") || "-"}</td>
                    <td className="mono" title={version.digest}>
                      {version.digest.slice(0, 19)}
                    </td>
                    <td>{bytes(version.size)}</td>
                    <td>
                      {version.pushedBy ?? "-"} · {age(version.pushedAt)}
                    </td>
                    <td>
                      {version.applications.map((app) =>
                        app.kind === "Application" && app.project ? (
                          <Link key={`${app.project}/${app.name}`} to={projectPath(app.project, `applications/${encodeURIComponent(app.name)}`, environment)}>
                            {app.name}{" "}
                          </Link>
                        ) : (
                          <span key={`${app.kind}/${app.name}`}>{app.name} </span>
                        ),
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </aside>
        )}
      </div>
      {list.data && list.data.items.length === 0 && <p>{t("common.none")}</p>}
    </section>
  );
}
