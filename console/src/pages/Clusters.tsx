import { Link } from "react-router";
import { collection, type ApiObject, type Page } from "../api";
import { Badge, ErrorNote } from "../components/Common";
import { bytes, cores, age } from "../format";
import { useGet } from "../hooks";
import { useI18n } from "../i18n";

export interface Capacity {
  nodes: number;
  readyNodes: number;
  allocatableCpuMillis: number;
  allocatableMemoryBytes: number;
  requestedCpuMillis: number;
  requestedMemoryBytes: number;
}

export interface ClusterStatus {
  phase?: string;
  since?: string;
  message?: string;
  version?: string;
  capacity?: Capacity;
  nodes?: {
    name: string;
    ready: boolean;
    schedulable: boolean;
    version: string;
    allocatableCpuMillis: number;
    allocatableMemoryBytes: number;
    requestedCpuMillis: number;
    requestedMemoryBytes: number;
  }[];
  storageClasses?: { name: string; provisioner: string; default: boolean }[];
}

export type Cluster = ApiObject<{ type: string }, ClusterStatus>;

export function phaseTone(phase: string | undefined): "ok" | "warn" | "bad" | "idle" {
  if (phase === "Ready") return "ok";
  if (phase === "Unreachable" || phase === "Unauthorized") return "bad";
  if (phase === "Unknown") return "warn";
  return "idle";
}

export function Clusters() {
  const { t } = useI18n();
  const { data, error } = useGet<Page<Cluster>>(collection("clusters", undefined, { limit: 200 }), 10_000);
  return (
    <section>
      <h1>{t("clusters.title")}</h1>
      <ErrorNote error={error} />
      <table data-testid="clusters">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("clusters.type")}</th>
            <th>{t("common.status")}</th>
            <th>{t("clusters.version")}</th>
            <th>{t("clusters.nodes")}</th>
            <th>{t("clusters.cpu")}</th>
            <th>{t("clusters.memory")}</th>
            <th>{t("clusters.since")}</th>
          </tr>
        </thead>
        <tbody>
          {data?.items.map((cluster) => {
            const status = cluster.status ?? {};
            const capacity = status.capacity;
            return (
              <tr key={cluster.metadata.name}>
                <td>
                  <Link to={`/clusters/${encodeURIComponent(cluster.metadata.name)}`}>{cluster.metadata.name}</Link>
                </td>
                <td>{cluster.spec.type}</td>
                <td>
                  <Badge tone={phaseTone(status.phase)} testId={`cluster-phase-${cluster.metadata.name}`}>
                    {status.phase ?? "-"}
                  </Badge>
                </td>
                <td>{status.version ?? "-"}</td>
                <td>{capacity ? `${capacity.readyNodes}/${capacity.nodes}` : "-"}</td>
                <td>{capacity ? `${cores(capacity.requestedCpuMillis)} / ${cores(capacity.allocatableCpuMillis)}` : "-"}</td>
                <td>{capacity ? `${bytes(capacity.requestedMemoryBytes)} / ${bytes(capacity.allocatableMemoryBytes)}` : "-"}</td>
                <td>{age(status.since)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {data && data.items.length === 0 && <p>{t("common.none")}</p>}
    </section>
  );
}
