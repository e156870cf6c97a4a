// The frame of every page: navigation, the project and environment switcher, the language,
// the user and logout.

import { useEffect, useState, type ReactNode } from "react";
import { Link, NavLink, useLocation, useNavigate } from "react-router";
import { listAll, type ApiObject } from "../api";
import { useI18n, type Language } from "../i18n";
import { projectPath, useScope } from "../scope";
import { isAdmin, useSession } from "../session";

export function Shell({ children }: { children: ReactNode }) {
  const { t, language, setLanguage } = useI18n();
  const { who, logout } = useSession();
  const { project, environment } = useScope();
  const navigate = useNavigate();
  const location = useLocation();
  const [projects, setProjects] = useState<string[]>([]);
  const [environments, setEnvironments] = useState<string[]>([]);

  useEffect(() => {
    listAll<ApiObject>("projects")
      .then((items) => setProjects(items.map((p) => p.metadata.name)))
      .catch(() => setProjects([]));
  }, []);
  useEffect(() => {
    if (!project) return;
    listAll<ApiObject>("environments", project)
      .then((items) => setEnvironments(items.map((e) => e.metadata.name)))
      .catch(() => setEnvironments([]));
  }, [project]);

  const onProject = (next: string) => navigate(projectPath(next, "applications", ""));
  const onEnvironment = (next: string) => {
    const params = new URLSearchParams(location.search);
    if (next) params.set("env", next);
    else params.delete("env");
    const target = project && !location.pathname.startsWith("/projects/") ? projectPath(project, "applications", next) : `${location.pathname}?${params}`;
    navigate(target);
  };

  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/" className="brand">
          {t("app.title")}
        </Link>
        <nav className="nav">
          {project && (
            <NavLink to={projectPath(project, "applications", environment)} data-testid="nav-applications">
              {t("nav.applications")}
            </NavLink>
          )}
          {project && (
            <NavLink to={projectPath(project, "repositories", environment)} data-testid="nav-repositories">
              {t("nav.delivery")}
            </NavLink>
          )}
          {project && (
            <NavLink to={projectPath(project, "templates", environment)} data-testid="nav-templates">
              {t("nav.templates")}
            </NavLink>
          )}
          <NavLink to="/clusters" data-testid="nav-clusters">
            {t("nav.clusters")}
          </NavLink>
          <NavLink to="/access" data-testid="nav-access">
            {t("nav.access")}
          </NavLink>
          {(isAdmin(who) || who?.grants.some((g) => g.role === "auditor")) && (
            <NavLink to="/audit" data-testid="nav-audit">
              {t("nav.audit")}
            </NavLink>
          )}
        </nav>
        <div className="switcher">
          <label>
            {t("scope.project")}
            <select data-testid="project-switcher" value={project ?? ""} onChange={(e) => onProject(e.target.value)}>
              {!project && <option value="">—</option>}
              {projects.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
          </label>
          <label>
            {t("scope.environment")}
            <select data-testid="environment-switcher" value={environment} onChange={(e) => onEnvironment(e.target.value)}>
              <option value="">{t("scope.allEnvironments")}</option>
              {environments.map((e) => (
                <option key={e} value={e}>
                  {e}
                </option>
              ))}
            </select>
          </label>
        </div>
        <div className="user">
          <select
            aria-label={t("language")}
            data-testid="language-switcher"
            value={language}
            onChange={(e) => setLanguage(e.target.value as Language)}
          >
            <option value="en">English</option>
            <option value="zh-CN">简体中文</option>
          </select>
          <span data-testid="current-user">{who?.user}</span>
          <button type="button" data-testid="logout" onClick={() => void logout()}>
            {t("logout")}
          </button>
        </div>
      </header>
      <main className="content">{children}</main>
    </div>
  );
}
