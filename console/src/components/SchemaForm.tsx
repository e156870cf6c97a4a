// A form generated from a JSON schema of `type: object` (a template's parameters): a field
// per property, typed (text, number, a choice for an enum, a checkbox for a boolean), with
// its default, description and whether it is required; errors shown at their field.

import { useI18n } from "../i18n";

export interface PropertySchema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  title?: string;
}

export interface ObjectSchema {
  type?: string;
  required?: string[];
  properties?: Record<string, PropertySchema>;
}

/// The initial values: each property's default, else empty.
export function defaults(schema: ObjectSchema): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    if (property.default !== undefined) values[name] = property.default;
  }
  return values;
}

export function SchemaForm({
  schema,
  values,
  errors,
  onChange,
}: {
  schema: ObjectSchema;
  values: Record<string, unknown>;
  errors: Record<string, string>;
  onChange: (values: Record<string, unknown>) => void;
}) {
  const { t } = useI18n();
  const required = new Set(schema.required ?? []);
  const set = (name: string, value: unknown) => {
    const next = { ...values };
    if (value === "" || value === undefined) delete next[name];
    else next[name] = value;
    onChange(next);
  };
  return (
    <div className="schema-form">
      {Object.entries(schema.properties ?? {}).map(([name, property]) => {
        const error = errors[`values.${name}`];
        const value = values[name];
        let input;
        if (property.enum) {
          input = (
            <select name={`values.${name}`} value={value === undefined ? "" : String(value)} onChange={(e) => set(name, property.enum?.find((v) => String(v) === e.target.value))}>
              {!required.has(name) && <option value="">—</option>}
              {property.enum.map((option) => (
                <option key={String(option)} value={String(option)}>
                  {String(option)}
                </option>
              ))}
            </select>
          );
        } else if (property.type === "boolean") {
          input = <input type="checkbox" name={`values.${name}`} checked={value === true} onChange={(e) => set(name, e.target.checked)} />;
        } else if (property.type === "integer" || property.type === "number") {
          input = (
            <input
              type="number"
              name={`values.${name}`}
              min={property.minimum}
              max={property.maximum}
              step={property.type === "integer" ? 1 : "any"}
              value={value === undefined ? "" : String(value)}
              onChange={(e) => set(name, e.target.value === "" ? undefined : Number(e.target.value))}
            />
          );
        } else {
          input = <input name={`values.${name}`} value={value === undefined ? "" : String(value)} onChange={(e) => set(name, e.target.value)} />;
        }
        return (
          <label key={name} className={error ? "field invalid" : "field"}>
            <span>
              {property.title ?? name}
              {required.has(name) ? " *" : ""} <span className="dim">({property.type ?? (property.enum ? "enum" : "string")})</span>
            </span>
            {input}
            {property.description && <span className="dim">{property.description}</span>}
            {error && (
              <span className="field-error" role="alert">
                {error}
              </span>
            )}
          </label>
        );
      })}
      {Object.keys(schema.properties ?? {}).length === 0 && <p className="dim">{t("templates.noParameters")}</p>}
    </div>
  );
}
