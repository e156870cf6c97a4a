// A new application, by form (components, image, ports, env, resources, probes, replicas)
// or as YAML. The server validates; its errors are shown at the field they name.

import { useEffect, useState, type FormEvent } from "react";
import { useNavigate, useParams } from "react-router";
import { collection, listAll, post, request, type ApiObject } from "../api";
import { ErrorNote, fieldErrors } from "../components/Common";
import { useI18n } from "../i18n";
import type { ComponentSpec } from "../model";
import { projectPath, useScope } from "../scope";
import { lineOf } from "../yamlLines";
import { stringify } from "yaml";

interface ComponentForm {
  name: string;
  image: string;
  replicas: string;
  command: string;
  ports: string;
  env: string;
  cpu: string;
  memory: string;
  readinessPath: string;
}

const emptyComponent = (): ComponentForm => ({
  name: "web",
  image: "",
  replicas: "1",
  command: "",
  ports: "",
  env: "",
  cpu: "",
  memory: "",
  readinessPath: "",
});

function lines(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}

function componentSpec(form: ComponentForm): ComponentSpec {
  const spec: ComponentSpec = { name: form.name.trim(), image: form.image.trim(), replicas: Number(form.replicas || "1") };
  const command = lines(form.command);
  if (command.length) spec.command = command;
  const ports = form.ports
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const [name, port] = p.includes(":") ? p.split(":") : ["http", p];
      return { name: name.trim(), port: Number(port) };
    });
  if (ports.length) spec.ports = ports;
  const env = lines(form.env).map((line) => {
    const cut = line.indexOf("=");
    return cut < 0 ? { name: line, value: "" } : { name: line.slice(0, cut), value: line.slice(cut + 1) };
  });
  if (env.length) spec.env = env;
  if (form.cpu || form.memory) {
    const limits: Record<string, string> = {};
    if (form.cpu) limits.cpu = form.cpu;
    if (form.memory) limits.memory = form.memory;
    spec.resources = { limits };
  }
  if (form.readinessPath && ports.length) {
    spec.probes = { readiness: { http: { port: ports[0].port, path: form.readinessPath }, periodSeconds: 2 } };
  }
  return spec;
}

function Field({ label, error, children }: { label: string; error?: string; children: React.ReactNode }) {
  return (
    <label className={error ? "field invalid" : "field"}>
      {label}
      {children}
      {error && (
        <span className="field-error" role="alert">
          {error}
        </span>
      )}
    </label>
  );
}

export function ApplicationCreate() {
  const { t } = useI18n();
  const { project = "" } = useParams();
  const { environment: scoped } = useScope();
  const navigate = useNavigate();
  const [mode, setMode] = useState<"form" | "yaml">("form");
  const [environments, setEnvironments] = useState<string[]>([]);
  const [name, setName] = useState("");
  const [environment, setEnvironment] = useState(scoped);
  const [components, setComponents] = useState<ComponentForm[]>([emptyComponent()]);
  const [yaml, setYaml] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const errors = fieldErrors(error);

  useEffect(() => {
    listAll<ApiObject>("environments", project)
      .then((items) => {
        const names = items.map((e) => e.metadata.name);
        setEnvironments(names);
        setEnvironment((current) => current || names[0] || "");
      })
      .catch(() => setEnvironments([]));
  }, [project]);

  const document = () => ({
    apiVersion: "flotilla.io/v1",
    kind: "Application",
    metadata: { name: name.trim(), project },
    spec: { environment, components: components.map(componentSpec) },
  });

  const toYaml = () => {
    setYaml(stringify(document()));
    setMode("yaml");
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const created =
        mode === "form"
          ? await post<ApiObject>(collection("applications", project), document())
          : await request<ApiObject>("POST", collection("applications", project), yaml, "application/yaml");
      navigate(projectPath(project, `applications/${encodeURIComponent(created.metadata.name)}`, scoped));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const set = (index: number, patch: Partial<ComponentForm>) =>
    setComponents((list) => list.map((c, i) => (i === index ? { ...c, ...patch } : c)));
  const at = (index: number, field: string) => errors[`spec.components[${index}].${field}`];
  const unplaced = Object.entries(errors).filter(
    ([path]) => mode === "yaml" || !(path === "metadata.name" || path === "spec.environment" || path.startsWith("spec.components[")),
  );

  return (
    <section>
      <h1>{t("create.title")}</h1>
      <div className="tabs">
        <button type="button" className={mode === "form" ? "active" : ""} onClick={() => setMode("form")}>
          {t("create.byForm")}
        </button>
        <button type="button" className={mode === "yaml" ? "active" : ""} onClick={toYaml} data-testid="mode-yaml">
          {t("create.byYaml")}
        </button>
      </div>
      <form onSubmit={submit} className="create" noValidate>
        {mode === "form" ? (
          <>
            <Field label={t("create.name")} error={errors["metadata.name"]}>
              <input name="name" value={name} onChange={(e) => setName(e.target.value)} data-testid="app-name-input" />
            </Field>
            <Field label={t("create.environment")} error={errors["spec.environment"]}>
              <select name="environment" value={environment} onChange={(e) => setEnvironment(e.target.value)}>
                {environments.map((e) => (
                  <option key={e} value={e}>
                    {e}
                  </option>
                ))}
              </select>
            </Field>
            {components.map((component, index) => (
              <fieldset key={index} data-testid={`component-form-${index}`}>
                <legend>{t("create.component", { index: index + 1 })}</legend>
                <Field label={t("create.componentName")} error={at(index, "name")}>
                  <input name={`components.${index}.name`} value={component.name} onChange={(e) => set(index, { name: e.target.value })} />
                </Field>
                <Field label={t("create.image")} error={at(index, "image")}>
                  <input name={`components.${index}.image`} value={component.image} onChange={(e) => set(index, { image: e.target.value })} />
                </Field>
                <Field label={t("create.replicas")} error={at(index, "replicas")}>
                  <input name={`components.${index}.replicas`} type="number" min={0} value={component.replicas} onChange={(e) => set(index, { replicas: e.target.value })} />
                </Field>
                <Field label={t("create.command")} error={at(index, "command")}>
                  <textarea name={`components.${index}.command`} rows={3} value={component.command} onChange={(e) => set(index, { command: e.target.value })} />
                </Field>
                <Field label={t("create.ports")} error={Object.entries(errors).find(([p]) => p.startsWith(`spec.components[${index}].ports`))?.[1]}>
                  <input name={`components.${index}.ports`} value={component.ports} onChange={(e) => set(index, { ports: e.target.value })} />
                </Field>
                <Field label={t("create.env")} error={Object.entries(errors).find(([p]) => p.startsWith(`spec.components[${index}].env`))?.[1]}>
                  <textarea name={`components.${index}.env`} rows={3} value={component.env} onChange={(e) => set(index, { env: e.target.value })} />
                </Field>
                <Field label={t("create.cpu")} error={at(index, "resources.limits.cpu")}>
                  <input name={`components.${index}.cpu`} value={component.cpu} onChange={(e) => set(index, { cpu: e.target.value })} />
                </Field>
                <Field label={t("create.memory")} error={at(index, "resources.limits.memory")}>
                  <input name={`components.${index}.memory`} value={component.memory} onChange={(e) => set(index, { memory: e.target.value })} />
                </Field>
                <Field label={t("create.readiness")} error={Object.entries(errors).find(([p]) => p.startsWith(`spec.components[${index}].probes`))?.[1]}>
                  <input name={`components.${index}.readiness`} value={component.readinessPath} onChange={(e) => set(index, { readinessPath: e.target.value })} />
                </Field>
                {components.length > 1 && (
                  <button type="button" onClick={() => setComponents((list) => list.filter((_, i) => i !== index))}>
                    {t("create.removeComponent")}
                  </button>
                )}
              </fieldset>
            ))}
            <button type="button" onClick={() => setComponents((list) => [...list, { ...emptyComponent(), name: "" }])}>
              {t("create.addComponent")}
            </button>
          </>
        ) : (
          <textarea className="yaml" rows={24} value={yaml} onChange={(e) => setYaml(e.target.value)} spellCheck={false} data-testid="yaml" />
        )}
        {unplaced.length > 0 && (
          <ul className="error" role="alert" data-testid="field-errors">
            {unplaced.map(([path, message]) => {
              const line = mode === "yaml" && path ? lineOf(yaml, path) : undefined;
              return (
                <li key={path}>
                  {line !== undefined && <span className="line">{t("create.line", { line })} · </span>}
                  <code>{path || "document"}</code>: {message}
                </li>
              );
            })}
          </ul>
        )}
        {error !== null && Object.keys(errors).length === 0 && <ErrorNote error={error} />}
        <button type="submit" disabled={busy} data-testid="create-submit">
          {t("common.create")}
        </button>
      </form>
    </section>
  );
}
