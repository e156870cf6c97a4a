// Instance metrics as small charts: CPU (cores) and memory per instance, sampled every five
// seconds while the page is open.

import { useEffect, useState } from "react";
import { get } from "../api";
import { bytes } from "../format";
import { useI18n } from "../i18n";

interface Metric {
  instance: string;
  timeMicros: number;
  cpuUsageNanos?: number;
  cpuNanocores?: number;
  memoryBytes: number;
}

interface Sample {
  time: number;
  cpu?: number; // cores
  memory: number;
}

const KEEP = 120;

function Chart({ values, format, testId }: { values: number[]; format: (v: number) => string; testId: string }) {
  const width = 240;
  const height = 48;
  const max = Math.max(...values, 1e-9);
  const points = values.map((v, i) => `${(i / Math.max(values.length - 1, 1)) * width},${height - (v / max) * (height - 4) - 2}`).join(" ");
  return (
    <div className="chart" data-testid={testId}>
      <svg width={width} height={height} role="img">
        <polyline fill="none" stroke="currentColor" strokeWidth="1.5" points={points} />
      </svg>
      <span>{values.length ? format(values[values.length - 1]) : "-"}</span>
    </div>
  );
}

export function MetricsView({ project, application }: { project: string; application: string }) {
  const { t } = useI18n();
  const [series, setSeries] = useState<Record<string, Sample[]>>({});
  const [unavailable, setUnavailable] = useState(false);
  const path = `/api/v1/projects/${encodeURIComponent(project)}/applications/${encodeURIComponent(application)}/metrics`;

  useEffect(() => {
    let last: Record<string, Metric> = {};
    const sample = async () => {
      try {
        const answer = await get<{ items: Metric[] }>(path);
        setUnavailable(false);
        setSeries((old) => {
          const next: Record<string, Sample[]> = {};
          for (const metric of answer.items) {
            const before = last[metric.instance];
            let cpu = metric.cpuNanocores !== undefined ? metric.cpuNanocores / 1e9 : undefined;
            if (cpu === undefined && metric.cpuUsageNanos !== undefined && before?.cpuUsageNanos !== undefined) {
              const seconds = (metric.timeMicros - before.timeMicros) / 1e6;
              if (seconds > 0) cpu = (metric.cpuUsageNanos - before.cpuUsageNanos) / 1e9 / seconds;
            }
            next[metric.instance] = [...(old[metric.instance] ?? []), { time: metric.timeMicros, cpu, memory: metric.memoryBytes }].slice(-KEEP);
          }
          return next;
        });
        last = Object.fromEntries(answer.items.map((m) => [m.instance, m]));
      } catch {
        setUnavailable(true);
      }
    };
    void sample();
    const timer = setInterval(sample, 5_000);
    return () => clearInterval(timer);
  }, [path]);

  const instances = Object.keys(series).sort();
  if (unavailable && instances.length === 0) return <p>{t("apps.metrics.unavailable")}</p>;
  return (
    <table className="metrics" data-testid="metrics">
      <thead>
        <tr>
          <th>{t("apps.instance")}</th>
          <th>{t("apps.metrics.cpu")}</th>
          <th>{t("apps.metrics.memory")}</th>
        </tr>
      </thead>
      <tbody>
        {instances.map((instance) => {
          const samples = series[instance];
          const cpu = samples.map((s) => s.cpu).filter((v): v is number => v !== undefined);
          return (
            <tr key={instance}>
              <td className="mono">{instance}</td>
              <td>
                <Chart values={cpu} format={(v) => v.toFixed(3)} testId={`cpu-${instance}`} />
              </td>
              <td>
                <Chart values={samples.map((s) => s.memory)} format={bytes} testId={`memory-${instance}`} />
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
