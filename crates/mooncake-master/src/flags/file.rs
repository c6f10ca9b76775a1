//! `--config_path`: a JSON or YAML file whose keys are the flag names (without dashes).
//! Its entries are turned into the same `(name, value)` pairs the command line gives,
//! so one code path validates both.

use std::path::Path;

/// Reads the file and returns `(key, value-as-text)` pairs (keys are distinct, so
/// their order does not matter).
/// The format follows the extension (`.json`, `.yaml`, `.yml`); anything else is
/// tried as JSON, then YAML. Errors name the file and the key at fault.
pub fn read_entries(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --config_path {path:?}: {e}"))?;
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let value: serde_yaml::Value = match ext.as_str() {
        "json" => from_json(path, &text)?,
        "yaml" | "yml" => from_yaml(path, &text)?,
        _ => from_json(path, &text).or_else(|_| from_yaml(path, &text))?,
    };
    entries(path, value)
}

fn from_json(path: &str, text: &str) -> Result<serde_yaml::Value, String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("--config_path {path:?} is not valid JSON: {e}"))?;
    serde_yaml::to_value(v).map_err(|e| format!("--config_path {path:?}: {e}"))
}

fn from_yaml(path: &str, text: &str) -> Result<serde_yaml::Value, String> {
    serde_yaml::from_str(text)
        .map_err(|e| format!("--config_path {path:?} is not valid JSON or YAML: {e}"))
}

fn entries(path: &str, value: serde_yaml::Value) -> Result<Vec<(String, String)>, String> {
    use serde_yaml::Value;
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(format!(
                "--config_path {path:?}: expected a map of flag names to values"
            ))
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let key = match k {
            Value::String(s) => s,
            other => {
                return Err(format!(
                    "--config_path {path:?}: key {other:?} is not a string"
                ))
            }
        };
        let text = match v {
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            // A list is accepted for `etcd_endpoints`; the flag's own separator joins it.
            Value::Sequence(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(format!(
                        "--config_path {path:?}: key {key:?} holds a nested value"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(";"),
            Value::Null => return Err(format!("--config_path {path:?}: key {key:?} has no value")),
            _ => {
                return Err(format!(
                    "--config_path {path:?}: key {key:?} holds a nested value"
                ))
            }
        };
        out.push((key, text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        (dir, p.to_string_lossy().into_owned())
    }

    #[test]
    fn json_and_yaml_give_the_same_pairs() {
        let (_d1, j) = write(
            "m.json",
            r#"{"rpc_port": 1234, "enable_ha": false, "cluster_id": "c"}"#,
        );
        let (_d2, y) = write(
            "m.yaml",
            "rpc_port: 1234\nenable_ha: false\ncluster_id: c\n",
        );
        let want = vec![
            ("cluster_id".to_string(), "c".to_string()),
            ("enable_ha".to_string(), "false".to_string()),
            ("rpc_port".to_string(), "1234".to_string()),
        ];
        let sorted = |mut v: Vec<(String, String)>| {
            v.sort();
            v
        };
        assert_eq!(sorted(read_entries(&j).unwrap()), want);
        assert_eq!(sorted(read_entries(&y).unwrap()), want);
    }

    #[test]
    fn lists_join_and_bad_files_are_named() {
        let (_d, y) = write("m.yml", "etcd_endpoints: [a:1, b:2]\n");
        assert_eq!(read_entries(&y).unwrap()[0].1, "a:1;b:2");
        let (_d, bad) = write("m.json", "{not json");
        assert!(read_entries(&bad).unwrap_err().contains("config_path"));
        let (_d, nested) = write("m.yaml", "rpc_port: {a: 1}\n");
        assert!(read_entries(&nested).unwrap_err().contains("rpc_port"));
        assert!(read_entries("/nonexistent/x.json")
            .unwrap_err()
            .contains("config_path"));
    }
}
