// Data hooks: a request's answer with its loading and error states, reloadable, and polled
// where a page shows something live.

import { useCallback, useEffect, useRef, useState } from "react";
import { get } from "./api";

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload: () => void;
}

/// GETs `path` (nothing while it is null); again every `pollMs` when given.
export function useGet<T>(path: string | null, pollMs?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [loading, setLoading] = useState(false);
  const [tick, setTick] = useState(0);
  const current = useRef(path);
  current.current = path;

  useEffect(() => {
    if (!path) return;
    let cancelled = false;
    setLoading(true);
    get<T>(path)
      .then((answer) => {
        if (!cancelled && current.current === path) {
          setData(answer);
          setError(undefined);
        }
      })
      .catch((e: Error) => {
        if (!cancelled) setError(e);
      })
      .finally(() => {
        if (!cancelled) setLoading(false);
      });
    return () => {
      cancelled = true;
    };
  }, [path, tick]);

  useEffect(() => {
    if (!path || !pollMs) return;
    const timer = setInterval(() => setTick((n) => n + 1), pollMs);
    return () => clearInterval(timer);
  }, [path, pollMs]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, loading, reload };
}

interface Access {
  allowed: boolean;
  reason?: string;
}

/// Whether the caller may `verb` a `kind` there, as the server decides it (false until it
/// answered; `useAccess` tells whether it has).
export function useCan(verb: string, kind: string, project?: string, environment?: string): boolean {
  return useAccess(verb, kind, project, environment) ?? false;
}

/// [`useCan`], `undefined` until the server answered.
export function useAccess(verb: string, kind: string, project?: string, environment?: string): boolean | undefined {
  const query = new URLSearchParams({ verb, kind });
  if (project) query.set("project", project);
  if (environment) query.set("environment", environment);
  const { data } = useGet<Access>(`/api/v1/auth/can?${query}`);
  return data?.allowed;
}
