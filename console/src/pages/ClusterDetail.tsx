import { useParams } from "react-router";
import { item } from "../api";
import { Badge, ErrorNote } from "../components/Common";
import { bytes, cores, age } from "../format";
import { useGet } from "../hooks";
import { useI18n } from "../i18n";
import { phaseTone, type Cluster } from "./Clusters";

export function ClusterDetail() {
  const { t } = useI18n();
  const { name = "" } = useParams();
  const { data, error } = useGet<Cluster>(item("clusters", name), 10_000);
  const status = data?.status ?? {};
  return (
    <section>
      <h1>{t("clusters.detail", { name })}</h1>
      <ErrorNote error={error} />
      {data && (
        <>
          <dl className="facts">
            <dt>{t("clusters.type")}</dt>
            <dd>{data.spec.type}</dd>
            <dt>{t("common.status")}</dt>
            <dd>
              <Badge tone={phaseTone(status.phase)} testId="cluster-phase">
                {status.phase ?? "-"}
              </Badge>{" "}
              {t("clusters.since")} {age(status.since)}
            </dd>
            {status.message && (
              <>
                <dt>{t("clusters.lastError")}</dt>
                <dd className="error">{status.message}</dd>
              </>
            )}
            <dt>{t("clusters.version")}</dt>
            <dd>{status.version ?? "-"}</dd>
          </dl>
          <h2>{t("clusters.nodes")}</h2>
          <table>
            <thead>
              <tr>
                <th>{t("common.name")}</th>
                <th>{t("common.status")}</th>
                <th>{t("clusters.version")}</th>
                <th>{t("clusters.cpu")}</th>
                <th>{t("clusters.memory")}</th>
              </tr>
            </thead>
            <tbody>
              {(status.nodes ?? []).map((node) => (
                <tr key={node.name}>
                  <td>{node.name}</td>
                  <td>
                    <Badge tone={node.ready ? "ok" : "bad"}>{node.ready ? "Ready" : "NotReady"}</Badge>
                  </td>
                  <td>{node.version}</td>
                  <td>
                    {cores(node.requestedCpuMillis)} / {cores(node.allocatableCpuMillis)}
                  </td>
                  <td>
                    {bytes(node.requestedMemoryBytes)} / {bytes(node.allocatableMemoryBytes)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>{t("clusters.storageClasses")}</h2>
          <ul>
            {(status.storageClasses ?? []).map((sc) => (
              <li key={sc.name}>
                {sc.name} ({sc.provisioner}){sc.default ? " *" : ""}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
