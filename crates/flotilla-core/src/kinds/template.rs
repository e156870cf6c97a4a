//! `Template` (a project's) and `PlatformTemplate` (shared by every project): an Application
//! saved with parameters, from which new applications are made by giving values.
//!
//! A template keeps its versions, oldest first; each has its parameters, described by a JSON
//! schema (types, defaults, enums, descriptions: what a form is generated from), and the
//! application spec with placeholders:
//!
//! - a string that is exactly `${name}` becomes the parameter's value with its type (a
//!   number of replicas stays a number);
//! - `${name}` inside a longer string is replaced by the value's text (`web:${tag}`);
//! - `name` may be a dotted path into object parameters (`${db.host}`); `$${` is a literal `${`.
//!
//! [`TemplateSpec::render`] checks the values against the schema (every error with its path,
//! `values.replicas`), fills in defaults and returns the application spec; the Application
//! made from it is then validated like any other.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Category, KindSpec, Reference, Scope, pointer_path};
use crate::object::ObjectMeta;
use crate::validation::ValidationErrors;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Oldest first; instantiating without a version takes the last.
    #[schemars(length(min = 1))]
    pub versions: Vec<TemplateVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateVersion {
    /// `1.0.0`, `2024-06`: unique within the template.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// A JSON schema of `type: object` describing the parameters.
    #[schemars(with = "Map<String, Value>")]
    pub parameters: Value,
    /// The Application spec, with `${parameter}` placeholders.
    #[schemars(with = "Map<String, Value>")]
    pub application: Value,
}

/// A template every project may instantiate; written by platform admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlatformTemplateSpec(pub TemplateSpec);

impl KindSpec for TemplateSpec {
    const KIND: &'static str = "Template";
    const PLURAL: &'static str = "templates";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::Workload;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        self.check(errors);
    }

    fn references(&self, meta: &ObjectMeta) -> Vec<Reference> {
        let Some(project) = &meta.project else { return Vec::new() };
        vec![Reference::new("metadata.project", "Project", None, project)]
    }
}

impl KindSpec for PlatformTemplateSpec {
    const KIND: &'static str = "PlatformTemplate";
    const PLURAL: &'static str = "platformtemplates";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Infrastructure;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        self.0.check(errors);
    }
}

/// One placeholder found in a string.
enum Piece<'a> {
    Text(String),
    Parameter(&'a str),
}

/// Splits `text` into literal text and `${…}` placeholders; `Err` names what is malformed.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut found = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        literal.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(escaped) = after.strip_prefix("$${") {
            literal.push_str("${");
            rest = escaped;
        } else if let Some(open) = after.strip_prefix("${") {
            let end = open.find('}').ok_or_else(|| format!("{text:?} opens a placeholder ${{ that is not closed"))?;
            let name = open[..end].trim();
            if name.is_empty() || !name.split('.').all(is_parameter_name) {
                return Err(format!("${{{name}}} is not a parameter name (letters, digits, _ and -, dotted paths)"));
            }
            if !literal.is_empty() {
                found.push(Piece::Text(std::mem::take(&mut literal)));
            }
            found.push(Piece::Parameter(name));
            rest = &open[end + 1..];
        } else {
            literal.push('$');
            rest = &after[1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        found.push(Piece::Text(literal));
    }
    Ok(found)
}

fn is_parameter_name(segment: &str) -> bool {
    !segment.is_empty() && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Visits every string of `value` with its path under `path`.
fn each_string<'v>(value: &'v Value, path: &str, visit: &mut dyn FnMut(&str, &'v str)) {
    match value {
        Value::String(text) => visit(path, text),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                each_string(item, &format!("{path}[{index}]"), visit);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                each_string(item, &format!("{path}.{key}"), visit);
            }
        }
        _ => {}
    }
}

/// The schema of the parameter at dotted `name`, if `parameters` declares it.
fn declared<'s>(parameters: &'s Value, name: &str) -> Option<&'s Value> {
    name.split('.').try_fold(parameters, |schema, segment| schema.get("properties")?.get(segment))
}

/// The value at dotted `name` in `values`.
fn lookup<'v>(values: &'v Value, name: &str) -> Option<&'v Value> {
    name.split('.').try_fold(values, |value, segment| value.get(segment))
}

/// Fills in the defaults `schema` declares for properties `values` does not give, in
/// nested objects too.
fn apply_defaults(schema: &Value, values: &mut Map<String, Value>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, property) in properties {
        if !values.contains_key(name)
            && let Some(default) = property.get("default")
        {
            values.insert(name.clone(), default.clone());
        }
        if let Some(Value::Object(nested)) = values.get_mut(name) {
            apply_defaults(property, nested);
        }
    }
}

impl TemplateSpec {
    /// The version named `version`, or the newest.
    pub fn version(&self, version: Option<&str>) -> Option<&TemplateVersion> {
        match version {
            Some(wanted) => self.versions.iter().find(|v| v.version == wanted),
            None => self.versions.last(),
        }
    }

    fn check(&self, errors: &mut ValidationErrors) {
        for (index, version) in self.versions.iter().enumerate() {
            let path = format!("spec.versions[{index}]");
            if version.version.trim().is_empty() || version.version.len() > 64 {
                errors.push(format!("{path}.version"), "must be 1 to 64 characters");
            }
            if self.versions[..index].iter().any(|earlier| earlier.version == version.version) {
                errors.push(format!("{path}.version"), format!("version {:?} is listed twice", version.version));
            }
            if version.parameters.get("type").and_then(Value::as_str) != Some("object") {
                errors.push(format!("{path}.parameters.type"), "the parameters' schema must be of type \"object\"");
            }
            if let Err(error) = jsonschema::validator_for(&version.parameters) {
                errors.push(format!("{path}.parameters"), format!("not a valid JSON schema: {error}"));
            }
            if !version.application.is_object() {
                errors.push(format!("{path}.application"), "must be an Application spec (a mapping)");
            }
            each_string(&version.application, &format!("{path}.application"), &mut |at, text| match pieces(text) {
                Err(problem) => errors.push(at, problem),
                Ok(found) => {
                    for piece in found {
                        if let Piece::Parameter(name) = piece
                            && declared(&version.parameters, name).is_none()
                        {
                            errors.push(
                                at,
                                format!("${{{name}}} names no parameter declared in {path}.parameters.properties"),
                            );
                        }
                    }
                }
            });
        }
    }

    /// The application spec of `version` (the newest when `None`) with `values`; errors
    /// name their path under `values` (or `version`).
    pub fn render(&self, version: Option<&str>, values: &Value) -> Result<Value, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let Some(chosen) = self.version(version) else {
            let known: Vec<&str> = self.versions.iter().map(|v| v.version.as_str()).collect();
            errors.push("version", format!("{:?} is not a version of this template ({})", version, known.join(", ")));
            return Err(errors);
        };
        let mut values = match values {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => {
                errors.push("values", "must be a mapping of parameter names to values");
                return Err(errors);
            }
        };
        apply_defaults(&chosen.parameters, &mut values);
        let values = Value::Object(values);
        match jsonschema::validator_for(&chosen.parameters) {
            Ok(validator) => {
                for error in validator.iter_errors(&values) {
                    let path = pointer_path("values", &error.instance_path().to_string());
                    match error.kind() {
                        jsonschema::error::ValidationErrorKind::Required { property } => {
                            errors.push(format!("{path}.{}", property.as_str().unwrap_or_default()), "is required")
                        }
                        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                            for name in unexpected {
                                errors.push(format!("{path}.{name}"), "is not a parameter of this template");
                            }
                        }
                        _ => errors.push(path, error.to_string()),
                    }
                }
            }
            Err(error) => errors.push("version", format!("the template's parameters are not a valid schema: {error}")),
        }
        if !errors.0.is_empty() {
            return Err(errors);
        }
        let rendered = substitute(&chosen.application, &values, &mut errors);
        errors.into_result().map(|()| rendered)
    }
}

/// A parameter made from a field of an Application: `name` replaces the value at `path`
/// (`components[0].image`, `config.LOG_LEVEL`), whose current value becomes its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterFrom {
    pub name: String,
    pub path: String,
}

impl ParameterFrom {
    /// `NAME=PATH`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, path) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=PATH"))?;
        if !is_parameter_name(name) {
            return Err(format!("{name:?} is not a parameter name (letters, digits, _ and -)"));
        }
        if path.is_empty() {
            return Err(format!("{text:?} names no field"));
        }
        Ok(Self { name: name.to_string(), path: path.trim_start_matches("spec.").to_string() })
    }
}

/// The segments of `components[0].image`: `components`, `0`, `image`.
fn path_segments(path: &str) -> Vec<String> {
    path.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn field_mut<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    path_segments(path).iter().try_fold(value, |value, segment| match value {
        Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?),
        Value::Object(map) => map.get_mut(segment),
        _ => None,
    })
}

/// `value` with every `${` in its strings written `$${`, which renders back to `${`.
fn escape_placeholders(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace("${", "$${")),
        Value::Array(items) => Value::Array(items.iter().map(escape_placeholders).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), escape_placeholders(v))).collect()),
        other => other.clone(),
    }
}

/// The JSON schema type of a value.
fn schema_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "string",
    }
}

impl TemplateVersion {
    /// A version made from an Application's spec: each parameter replaces its field with
    /// `${name}`, and is declared with the field's type and its current value as default.
    /// Errors name the parameter (`parameters[1]`) whose field does not exist.
    pub fn from_application(
        version: &str,
        application: &Value,
        parameters: &[ParameterFrom],
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        // Text that looks like a placeholder stays text.
        let mut spec = escape_placeholders(application);
        let mut properties = Map::new();
        for (index, parameter) in parameters.iter().enumerate() {
            if properties.contains_key(&parameter.name) {
                errors.push(format!("parameters[{index}]"), format!("parameter {:?} is named twice", parameter.name));
                continue;
            }
            let Some(field) = field_mut(&mut spec, &parameter.path) else {
                errors.push(
                    format!("parameters[{index}]"),
                    format!("the application has no field spec.{}", parameter.path),
                );
                continue;
            };
            *field = Value::String(format!("${{{}}}", parameter.name));
            // The default is the field's value as the application has it (not escaped).
            let current = field_mut(&mut application.clone(), &parameter.path).cloned().unwrap_or(Value::Null);
            properties.insert(
                parameter.name.clone(),
                serde_json::json!({"type": schema_type(&current), "default": current,
                    "description": format!("spec.{} of the application", parameter.path)}),
            );
        }
        if !errors.0.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            version: version.to_string(),
            notes: None,
            parameters: serde_json::json!({"type": "object", "additionalProperties": false, "properties": properties}),
            application: spec,
        })
    }
}

/// `template` with its placeholders replaced by `values`.
fn substitute(template: &Value, values: &Value, errors: &mut ValidationErrors) -> Value {
    match template {
        Value::String(text) => {
            let Ok(found) = pieces(text) else { return template.clone() };
            let value_of = |name: &str, errors: &mut ValidationErrors| {
                let value = lookup(values, name).cloned();
                if value.is_none() {
                    errors.push(format!("values.{name}"), "is required: the template uses it and it has no default");
                }
                value
            };
            if let [Piece::Parameter(name)] = found.as_slice() {
                return value_of(name, errors).unwrap_or(Value::Null);
            }
            let mut text = String::new();
            for piece in found {
                match piece {
                    Piece::Text(literal) => text.push_str(&literal),
                    Piece::Parameter(name) => match value_of(name, errors) {
                        Some(Value::String(value)) => text.push_str(&value),
                        Some(value @ (Value::Number(_) | Value::Bool(_))) => text.push_str(&value.to_string()),
                        Some(_) => errors.push(
                            format!("values.{name}"),
                            "is used inside a text, so it must be a string, number or boolean",
                        ),
                        None => {}
                    },
                }
            }
            Value::String(text)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| substitute(item, values, errors)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(key, item)| (key.clone(), substitute(item, values, errors))).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template() -> TemplateSpec {
        serde_json::from_value(json!({
            "versions": [
                {"version": "1", "parameters": {"type": "object", "properties": {"image": {"type": "string"}}, "required": ["image"]},
                 "application": {"environment": "test", "components": [{"name": "web", "image": "${image}"}]}},
                {"version": "2",
                 "parameters": {"type": "object", "additionalProperties": false, "required": ["tag"], "properties": {
                    "tag": {"type": "string", "description": "image tag"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 2},
                    "environment": {"type": "string", "enum": ["test", "prod"], "default": "test"},
                    "db": {"type": "object", "properties": {"host": {"type": "string", "default": "db.internal"}}, "default": {}}}},
                 "application": {"environment": "${environment}", "components": [{
                    "name": "web", "image": "registry.test/shop/web:${tag}", "replicas": "${replicas}",
                    "env": [{"name": "DB", "value": "postgres://${db.host}:5432/$${literal}"}]}]}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn values_fill_the_placeholders_with_their_types_and_defaults() {
        let rendered = template().render(None, &json!({"tag": "1.4", "replicas": 3})).unwrap();
        assert_eq!(rendered["environment"], "test", "a default");
        let component = &rendered["components"][0];
        assert_eq!(component["image"], "registry.test/shop/web:1.4");
        assert_eq!(component["replicas"], 3, "a number stays a number");
        assert_eq!(component["env"][0]["value"], "postgres://db.internal:5432/${literal}", "nested default, escape");
        let first = template().render(Some("1"), &json!({"image": "busybox"})).unwrap();
        assert_eq!(first["components"][0]["image"], "busybox");
    }

    #[test]
    fn bad_values_are_refused_with_their_paths() {
        let errors =
            template().render(None, &json!({"replicas": 0, "environment": "staging", "extra": 1})).unwrap_err();
        let mut paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["values.environment", "values.extra", "values.replicas", "values.tag"], "{errors:?}");
        let errors = template().render(Some("9"), &json!({})).unwrap_err();
        assert_eq!(errors.0[0].path, "version");
        assert!(errors.0[0].message.contains("1, 2"), "names the versions: {errors:?}");
    }

    #[test]
    fn an_application_saved_with_parameters_renders_back_to_itself() {
        let application = json!({"environment": "test", "components": [
            {"name": "web", "image": "registry.test/shop/web:1", "replicas": 3, "command": ["sh", "-c", "echo ${HOME}"]}],
            "config": {"LOG_LEVEL": "info"}});
        let parameters: Vec<ParameterFrom> =
            ["image=components[0].image", "replicas=spec.components[0].replicas", "log=config.LOG_LEVEL"]
                .iter()
                .map(|text| ParameterFrom::parse(text).unwrap())
                .collect();
        let version = TemplateVersion::from_application("1", &application, &parameters).unwrap();
        assert_eq!(version.application["components"][0]["image"], "${image}");
        assert_eq!(version.parameters["properties"]["replicas"]["type"], "integer");
        let spec = TemplateSpec { description: None, versions: vec![version] };
        let mut errors = ValidationErrors::default();
        spec.validate(&ObjectMeta::default(), &mut errors);
        assert!(errors.0.is_empty(), "{errors:?}");
        assert_eq!(spec.render(None, &json!({})).unwrap(), application, "the defaults give the application back");
        let other = spec.render(None, &json!({"replicas": 5, "log": "debug"})).unwrap();
        assert_eq!(
            (other["components"][0]["replicas"].clone(), other["config"]["LOG_LEVEL"].clone()),
            (json!(5), json!("debug"))
        );

        let missing = [ParameterFrom::parse("tag=components[3].image").unwrap()];
        let errors = TemplateVersion::from_application("1", &application, &missing).unwrap_err();
        assert_eq!(errors.0[0].path, "parameters[0]");
        assert!(ParameterFrom::parse("no-path").is_err() && ParameterFrom::parse("bad name=x").is_err());
    }

    #[test]
    fn a_template_naming_an_undeclared_parameter_is_refused() {
        let spec: TemplateSpec = serde_json::from_value(json!({"versions": [
            {"version": "1", "parameters": {"type": "object", "properties": {"tag": {"type": "string"}}},
             "application": {"environment": "test", "components": [{"name": "web", "image": "web:${tga}", "command": ["${unclosed"]}]}},
            {"version": "1", "parameters": {"type": "array"}, "application": {}}
        ]}))
        .unwrap();
        let mut errors = ValidationErrors::default();
        spec.validate(&ObjectMeta::default(), &mut errors);
        let mut paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "spec.versions[0].application.components[0].command[0]",
                "spec.versions[0].application.components[0].image",
                "spec.versions[1].parameters.type",
                "spec.versions[1].version",
            ],
            "{errors:?}"
        );
        assert!(errors.0.iter().any(|e| e.message.contains("${tga}")));
    }
}
