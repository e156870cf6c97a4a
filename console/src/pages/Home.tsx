// Where `/` leads: the applications of the remembered (or first) project.

import { useEffect, useState } from "react";
import { Navigate } from "react-router";
import { listAll, type ApiObject } from "../api";
import { useI18n } from "../i18n";
import { projectPath, rememberedEnvironment, rememberedProject } from "../scope";

export function Home() {
  const { t } = useI18n();
  const [projects, setProjects] = useState<string[] | null>(null);
  useEffect(() => {
    listAll<ApiObject>("projects")
      .then((items) => setProjects(items.map((p) => p.metadata.name)))
      .catch(() => setProjects([]));
  }, []);
  if (projects === null) return <p>{t("common.loading")}</p>;
  const remembered = rememberedProject();
  const project = remembered && projects.includes(remembered) ? remembered : projects[0];
  if (!project) return <p>{t("scope.noProjects")}</p>;
  return <Navigate to={projectPath(project, "applications", rememberedEnvironment())} replace />;
}
