//! Resource quantities (`500m` CPU, `512Mi` memory) and resource quotas.
//!
//! Quantities follow Kubernetes' notation so that specs move between the embedded runtime
//! and Kubernetes clusters unchanged.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::ValidationErrors;

/// Limits on what a workspace or project may consume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuota {
    /// Total CPU, in cores (`8`, `0.5`) or millicores (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Total memory, in bytes with an optional suffix (`512Mi`, `16Gi`, `1G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Maximum number of running instances (containers/pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
}

impl ResourceQuota {
    /// Pushes an error for every quantity that does not parse.
    pub fn validate(&self, path: &str, errors: &mut ValidationErrors) {
        if let Some(cpu) = &self.cpu
            && let Err(problem) = parse_cpu_millis(cpu)
        {
            errors.push(format!("{path}.cpu"), problem);
        }
        if let Some(memory) = &self.memory
            && let Err(problem) = parse_bytes(memory)
        {
            errors.push(format!("{path}.memory"), problem);
        }
    }

    /// Pushes an error for every dimension of `self` that exceeds `outer`.
    pub fn validate_within(&self, outer: &ResourceQuota, path: &str, outer_name: &str, errors: &mut ValidationErrors) {
        let exceeds = |inner: Option<Result<u64, String>>, outer: Option<Result<u64, String>>| match (inner, outer) {
            (Some(Ok(inner)), Some(Ok(outer))) => inner > outer,
            (None, Some(Ok(_))) => false,
            _ => false,
        };
        if exceeds(self.cpu.as_deref().map(parse_cpu_millis), outer.cpu.as_deref().map(parse_cpu_millis)) {
            errors.push(
                format!("{path}.cpu"),
                format!(
                    "{} exceeds the {outer_name} quota of {}",
                    self.cpu.as_deref().unwrap_or_default(),
                    outer.cpu.as_deref().unwrap_or_default()
                ),
            );
        }
        if exceeds(self.memory.as_deref().map(parse_bytes), outer.memory.as_deref().map(parse_bytes)) {
            errors.push(
                format!("{path}.memory"),
                format!(
                    "{} exceeds the {outer_name} quota of {}",
                    self.memory.as_deref().unwrap_or_default(),
                    outer.memory.as_deref().unwrap_or_default()
                ),
            );
        }
        if let (Some(inner), Some(outer_n)) = (self.instances, outer.instances)
            && inner > outer_n
        {
            errors.push(format!("{path}.instances"), format!("{inner} exceeds the {outer_name} quota of {outer_n}"));
        }
    }
}

/// Shows an amount of one quota dimension, in its base unit.
type ShowAmount = fn(u64) -> String;

/// The dimensions of a quota, in base units, and how to show an amount of each.
const DIMENSIONS: [(&str, ShowAmount); 3] =
    [("cpu", |m| format!("{m}m")), ("memory", |b| format!("{b} bytes")), ("instances", |n| n.to_string())];

impl ResourceQuota {
    /// Amounts in base units, in the order of [`DIMENSIONS`]: CPU millicores, memory bytes,
    /// instances. Unset (or unparsable) dimensions are `None`.
    fn amounts(&self) -> [Option<u64>; 3] {
        [
            self.cpu.as_deref().and_then(|c| parse_cpu_millis(c).ok()),
            self.memory.as_deref().and_then(|m| parse_bytes(m).ok()),
            self.instances.map(u64::from),
        ]
    }

    /// Checks that `self` plus `siblings` (what others already hold of the same budget) fits
    /// in `outer`, dimension by dimension; the error names the totals.
    pub fn validate_allocation(
        &self,
        siblings: &[ResourceQuota],
        outer: &ResourceQuota,
        path: &str,
        outer_name: &str,
        others_name: &str,
        errors: &mut ValidationErrors,
    ) {
        let own = self.amounts();
        let limits = outer.amounts();
        let sibling_amounts: Vec<[Option<u64>; 3]> = siblings.iter().map(ResourceQuota::amounts).collect();
        for (index, (field, show)) in DIMENSIONS.iter().enumerate() {
            let Some(limit) = limits[index] else { continue };
            let allocated: u64 = sibling_amounts.iter().filter_map(|a| a[index]).sum();
            let requested = allocated + own[index].unwrap_or_default();
            if requested > limit {
                errors.push(
                    format!("{path}.{field}"),
                    format!(
                        "together with {others_name} ({} allocated) this makes {}, over the {outer_name} quota of {}",
                        show(allocated),
                        show(requested),
                        show(limit)
                    ),
                );
            }
        }
    }
}

/// Parses CPU into millicores: `2` -> 2000, `0.5` -> 500, `250m` -> 250.
pub fn parse_cpu_millis(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid CPU quantity {text:?}: use cores (\"2\", \"0.5\") or millicores (\"500m\")");
    if let Some(millis) = text.strip_suffix('m') {
        return millis.parse::<u64>().map_err(|_| bad());
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 3 {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let fraction_millis: u64 = if fraction.is_empty() {
        0
    } else {
        let padded = format!("{fraction:0<3}");
        padded.parse().map_err(|_| bad())?
    };
    whole.checked_mul(1000).and_then(|m| m.checked_add(fraction_millis)).ok_or_else(bad)
}

/// Parses a byte quantity: `1024`, `512Ki`, `16Gi`, `1G`, `1.5Gi`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid memory quantity {text:?}: use bytes with a suffix such as Ki, Mi, Gi, Ti, k, M, G, T (\"512Mi\")"
        )
    };
    let suffixes: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, multiplier) =
        suffixes.iter().find_map(|(suffix, mult)| text.strip_suffix(suffix).map(|n| (n, *mult))).unwrap_or((text, 1));
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 || number.contains(['e', 'E']) {
        return Err(bad());
    }
    let bytes = value * multiplier as f64;
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert!(parse_cpu_millis("two").is_err());
        assert!(parse_cpu_millis("0.0001").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert!(parse_bytes("12 GB").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn allocation_counts_the_siblings() {
        let outer = ResourceQuota { cpu: Some("4".into()), memory: None, instances: Some(10) };
        let siblings = vec![
            ResourceQuota { cpu: Some("1500m".into()), memory: Some("1Gi".into()), instances: Some(4) },
            ResourceQuota { cpu: Some("2".into()), memory: None, instances: None },
        ];
        let mut errors = ValidationErrors::default();
        ResourceQuota { cpu: Some("500m".into()), memory: None, instances: Some(6) }.validate_allocation(
            &siblings,
            &outer,
            "spec.quota",
            "workspace",
            "the other projects",
            &mut errors,
        );
        assert!(errors.is_empty(), "exactly full is allowed: {errors}");
        ResourceQuota { cpu: Some("501m".into()), memory: None, instances: Some(7) }.validate_allocation(
            &siblings,
            &outer,
            "spec.quota",
            "workspace",
            "the other projects",
            &mut errors,
        );
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["spec.quota.cpu", "spec.quota.instances"]);
        assert!(errors.0[0].message.contains("4001m") && errors.0[0].message.contains("3500m allocated"), "{errors}");
    }

    #[test]
    fn within() {
        let outer = ResourceQuota { cpu: Some("4".into()), memory: Some("8Gi".into()), instances: Some(10) };
        let inner = ResourceQuota { cpu: Some("4500m".into()), memory: Some("8Gi".into()), instances: Some(11) };
        let mut errors = ValidationErrors::default();
        inner.validate_within(&outer, "spec.quota", "workspace", &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["spec.quota.cpu", "spec.quota.instances"]);
    }
}
