// The project and environment the user works in: the project is in the URL of project
// pages, the environment in `?env=`; both are remembered for the next visit.

import { useEffect } from "react";
import { useLocation, useParams, useSearchParams } from "react-router";

const PROJECT_KEY = "flotilla.project";
const ENV_KEY = "flotilla.environment";

export function rememberedProject(): string | null {
  return localStorage.getItem(PROJECT_KEY);
}

export function rememberedEnvironment(): string {
  return localStorage.getItem(ENV_KEY) ?? "";
}

/// The current project (from the URL, else the remembered one) and environment.
export function useScope(): { project: string | null; environment: string } {
  const params = useParams();
  const location = useLocation();
  const [search] = useSearchParams();
  const fromPath = params.project ?? location.pathname.match(/^\/projects\/([^/]+)/)?.[1] ?? null;
  const project = fromPath ?? rememberedProject();
  const environment = search.get("env") ?? rememberedEnvironment();
  useEffect(() => {
    if (fromPath) localStorage.setItem(PROJECT_KEY, fromPath);
  }, [fromPath]);
  useEffect(() => {
    localStorage.setItem(ENV_KEY, environment);
  }, [environment]);
  return { project, environment };
}

/// A project page's path, keeping the environment.
export function projectPath(project: string, rest: string, environment: string): string {
  const base = `/projects/${encodeURIComponent(project)}/${rest}`;
  return environment ? `${base}?env=${encodeURIComponent(environment)}` : base;
}
