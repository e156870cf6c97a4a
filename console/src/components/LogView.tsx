// An application's log: the last lines of every instance, searched as you type, followed
// live on demand (the API streams NDJSON), downloadable as text.

import { useEffect, useMemo, useState } from "react";
import { useI18n } from "../i18n";

interface LogLine {
  timeMicros: number;
  instance: string;
  stream: string;
  text: string;
}

const KEEP = 5_000;

function parse(text: string): LogLine[] {
  return text
    .split("\n")
    .filter((line) => line.trim())
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as LogLine];
      } catch {
        return [];
      }
    });
}

export function LogView({ project, application }: { project: string; application: string }) {
  const { t } = useI18n();
  const [lines, setLines] = useState<LogLine[]>([]);
  const [search, setSearch] = useState("");
  const [follow, setFollow] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const base = `/api/v1/projects/${encodeURIComponent(project)}/applications/${encodeURIComponent(application)}/logs`;

  useEffect(() => {
    const abort = new AbortController();
    setError(null);
    const run = async () => {
      const response = await fetch(`${base}?tail=200${follow ? "&follow=true" : ""}`, { signal: abort.signal, credentials: "same-origin" });
      if (!response.ok || !response.body) {
        setError(`${response.status} ${response.statusText}`);
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        const cut = pending.lastIndexOf("\n");
        if (cut < 0) continue;
        const complete = parse(pending.slice(0, cut));
        pending = pending.slice(cut + 1);
        setLines((old) => [...old, ...complete].slice(-KEEP));
      }
    };
    setLines([]);
    run().catch((e: Error) => {
      if (e.name !== "AbortError") setError(e.message);
    });
    return () => abort.abort();
  }, [base, follow]);

  const shown = useMemo(() => {
    const needle = search.toLowerCase();
    return needle ? lines.filter((l) => l.text.toLowerCase().includes(needle) || l.instance.includes(needle)) : lines;
  }, [lines, search]);

  const download = () => {
    const text = lines.map((l) => `${new Date(l.timeMicros / 1000).toISOString()} ${l.instance} ${l.stream} ${l.text}`).join("\n");
    const url = URL.createObjectURL(new Blob([text + "\n"], { type: "text/plain" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `${application}.log`;
    link.click();
    URL.revokeObjectURL(url);
  };

  return (
    <div className="logs">
      <div className="toolbar">
        <input placeholder={t("apps.logs.search")} value={search} onChange={(e) => setSearch(e.target.value)} data-testid="log-search" />
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> {t("apps.logs.follow")}
        </label>
        <button type="button" onClick={download} data-testid="log-download">
          {t("apps.logs.download")}
        </button>
        <span>{t("apps.logs.lines", { count: shown.length })}</span>
      </div>
      {error && <p className="error">{error}</p>}
      <pre className="log" data-testid="log-lines">
        {shown.map((l, i) => (
          <div key={i} className={l.stream === "stderr" ? "stderr" : ""}>
            <span className="dim">{new Date(l.timeMicros / 1000).toLocaleTimeString()} {l.instance}</span> {l.text}
          </div>
        ))}
      </pre>
    </div>
  );
}
