// The templates gallery: the project's templates and the platform's, each with its
// versions; instantiating one opens a form generated from the version's parameter schema.

import { useState } from "react";
import { useNavigate, useParams } from "react-router";
import { collection, post, type ApiObject, type Page } from "../api";
import { ErrorNote, fieldErrors } from "../components/Common";
import { SchemaForm, defaults, type ObjectSchema } from "../components/SchemaForm";
import { useCan, useGet } from "../hooks";
import { useI18n } from "../i18n";
import { projectPath, useScope } from "../scope";

interface TemplateVersion {
  version: string;
  notes?: string;
  parameters: ObjectSchema;
  application: Record<string, unknown>;
}

type Template = ApiObject<{ description?: string; versions: TemplateVersion[] }>;

interface Chosen {
  template: Template;
  platform: boolean;
  version: TemplateVersion;
}

export function Templates() {
  const { t } = useI18n();
  const { project = "" } = useParams();
  const { environment } = useScope();
  const navigate = useNavigate();
  const own = useGet<Page<Template>>(collection("templates", project, { limit: 200 }));
  const shared = useGet<Page<Template>>(collection("platformtemplates", undefined, { limit: 200 }));
  const canCreate = useCan("create", "Application", project);
  const [chosen, setChosen] = useState<Chosen | null>(null);
  const [name, setName] = useState("");
  const [values, setValues] = useState<Record<string, unknown>>({});
  const [error, setError] = useState<unknown>(null);
  const errors = fieldErrors(error);

  const choose = (template: Template, platform: boolean, version: TemplateVersion) => {
    setChosen({ template, platform, version });
    setValues(defaults(version.parameters));
    setError(null);
  };

  const instantiate = async () => {
    if (!chosen) return;
    setError(null);
    const base = chosen.platform
      ? `/api/v1/platformtemplates/${encodeURIComponent(chosen.template.metadata.name)}`
      : `/api/v1/projects/${encodeURIComponent(project)}/templates/${encodeURIComponent(chosen.template.metadata.name)}`;
    try {
      const created = await post<ApiObject>(`${base}/instantiate`, { name, project, version: chosen.version.version, values });
      navigate(projectPath(project, `applications/${encodeURIComponent(created.metadata.name)}`, environment));
    } catch (e) {
      setError(e);
    }
  };

  const card = (template: Template, platform: boolean) => {
    const versions = template.spec.versions;
    const latest = versions[versions.length - 1];
    return (
      <div className="template-card" key={`${platform}-${template.metadata.name}`} data-testid={`template-${template.metadata.name}`}>
        <h3>{template.metadata.name}</h3>
        <p className="dim">{platform ? t("templates.platform") : t("templates.project")}</p>
        <p>{template.spec.description}</p>
        <p className="dim">
          {t("templates.versions")}: {versions.map((v) => v.version).join(", ")}
        </p>
        {canCreate && latest && (
          <button type="button" onClick={() => choose(template, platform, latest)} data-testid={`instantiate-${template.metadata.name}`}>
            {t("templates.instantiate")}
          </button>
        )}
      </div>
    );
  };

  return (
    <section>
      <h1>{t("templates.title")}</h1>
      <ErrorNote error={own.error ?? shared.error} />
      <div className="gallery">
        {own.data?.items.map((template) => card(template, false))}
        {shared.data?.items.map((template) => card(template, true))}
      </div>
      {own.data && shared.data && own.data.items.length + shared.data.items.length === 0 && <p>{t("common.none")}</p>}
      {chosen && (
        <div className="card wide" data-testid="instantiate-form">
          <h2>{t("templates.instantiateTitle", { name: chosen.template.metadata.name })}</h2>
          <label className="field">
            {t("templates.version")}
            <select
              value={chosen.version.version}
              onChange={(e) => {
                const version = chosen.template.spec.versions.find((v) => v.version === e.target.value);
                if (version) choose(chosen.template, chosen.platform, version);
              }}
            >
              {chosen.template.spec.versions.map((v) => (
                <option key={v.version} value={v.version}>
                  {v.version}
                </option>
              ))}
            </select>
          </label>
          {chosen.version.notes && <p className="dim">{chosen.version.notes}</p>}
          <label className={errors["name"] ? "field invalid" : "field"}>
            {t("create.name")}
            <input value={name} onChange={(e) => setName(e.target.value)} data-testid="instance-name" />
            {errors["name"] && <span className="field-error">{errors["name"]}</span>}
          </label>
          <SchemaForm schema={chosen.version.parameters} values={values} errors={errors} onChange={setValues} />
          {error !== null && Object.keys(errors).filter((p) => p !== "name" && !p.startsWith("values.")).length > 0 && (
            <ul className="error" role="alert">
              {Object.entries(errors)
                .filter(([p]) => p !== "name" && !p.startsWith("values."))
                .map(([path, message]) => (
                  <li key={path}>
                    <code>{path}</code>: {message}
                  </li>
                ))}
            </ul>
          )}
          {error !== null && Object.keys(errors).length === 0 && <ErrorNote error={error} />}
          <div className="actions">
            <button type="button" onClick={() => setChosen(null)}>
              {t("common.cancel")}
            </button>
            <button type="button" className="primary" onClick={() => void instantiate()} data-testid="instantiate-submit">
              {t("common.create")}
            </button>
          </div>
        </div>
      )}
    </section>
  );
}
