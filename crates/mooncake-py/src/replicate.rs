//! `ReplicateConfig` and `SoftPinAction` (CONTRACT §3): the per-put placement options,
//! with the reference's field names, defaults and types, so that callers that set
//! attributes one by one (SGLang, LMCache) keep working.

use mooncake_common::MooncakeError;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

/// What to do with the soft pin of the objects a put creates.
#[pyclass(eq, eq_int, hash, frozen, module = "mooncake.store", from_py_object)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum SoftPinAction {
    /// Leave the soft pin as the master decides (no soft pin for new objects).
    PRESERVE = 0,
    /// Soft-pin the object, for `soft_pin_ttl_ms` or the master's default TTL.
    ENABLE = 1,
    /// Do not soft-pin.
    DISABLE = 2,
}

#[pymethods]
impl SoftPinAction {
    /// The member's name, as pybind11 enums expose it.
    #[getter]
    fn name(&self) -> &'static str {
        match self {
            SoftPinAction::PRESERVE => "PRESERVE",
            SoftPinAction::ENABLE => "ENABLE",
            SoftPinAction::DISABLE => "DISABLE",
        }
    }

    #[getter]
    fn value(&self) -> i32 {
        *self as i32
    }
}

/// A validated placement request: the client's (and the master's) own type.
pub use mooncake_common::{ReplicateConfig as Placement, SoftPin};

/// Replication and pinning options for a put.
#[pyclass(module = "mooncake.store", from_py_object)]
#[derive(Debug, Clone)]
pub struct ReplicateConfig {
    replica_num: u64,
    #[pyo3(get, set)]
    with_hard_pin: bool,
    #[pyo3(get, set)]
    preferred_segment: String,
    #[pyo3(get, set)]
    preferred_segments: Vec<String>,
    #[pyo3(get, set)]
    soft_pin_action: SoftPinAction,
    soft_pin_ttl_ms: Option<u64>,
    /// Accepted for SGLang's group semantics; placement does not use it yet.
    #[pyo3(get, set)]
    group_ids: Option<Vec<String>>,
    /// The reference's NoF/DFS tiers and same-node preference: accepted so scripts
    /// written for it keep running; this implementation has no such tiers.
    #[pyo3(get, set)]
    nof_replica_num: u64,
    #[pyo3(get, set)]
    dfs_replica_num: u64,
    #[pyo3(get, set)]
    preferred_nof_segments: Vec<String>,
    #[pyo3(get, set)]
    prefer_alloc_in_same_node: bool,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        ReplicateConfig {
            replica_num: 1,
            with_hard_pin: false,
            preferred_segment: String::new(),
            preferred_segments: Vec::new(),
            soft_pin_action: SoftPinAction::PRESERVE,
            soft_pin_ttl_ms: None,
            group_ids: None,
            nof_replica_num: 0,
            dfs_replica_num: 0,
            preferred_nof_segments: Vec::new(),
            prefer_alloc_in_same_node: false,
        }
    }
}

/// A non-negative int (bools count, as in Python and the reference); anything else is
/// the `TypeError` the contract asks for, naming the field and what it got.
fn non_negative_int(field: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    let type_error = || {
        let got = v
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".to_string());
        PyTypeError::new_err(format!(
            "ReplicateConfig.{field} must be a non-negative int, got {got}"
        ))
    };
    if v.is_instance_of::<PyBool>() {
        return Ok(v.extract::<bool>()? as u64);
    }
    v.extract::<u64>().map_err(|_| type_error())
}

#[pymethods]
impl ReplicateConfig {
    #[new]
    #[pyo3(signature = (**kwargs))]
    fn new(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let this = Bound::new(py, ReplicateConfig::default())?;
        if let Some(kwargs) = kwargs {
            for (k, v) in kwargs.iter() {
                let name: String = k.extract()?;
                if !FIELDS.contains(&name.as_str()) {
                    return Err(PyTypeError::new_err(format!(
                        "ReplicateConfig() got an unexpected keyword argument '{name}'"
                    )));
                }
                this.setattr(name.as_str(), v)?;
            }
        }
        let cfg = this.borrow().clone();
        Ok(cfg)
    }

    #[getter]
    fn replica_num(&self) -> u64 {
        self.replica_num
    }

    #[setter]
    fn set_replica_num(&mut self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        self.replica_num = non_negative_int("replica_num", v)?;
        Ok(())
    }

    #[getter]
    fn soft_pin_ttl_ms(&self) -> Option<u64> {
        self.soft_pin_ttl_ms
    }

    #[setter]
    fn set_soft_pin_ttl_ms(&mut self, v: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.soft_pin_ttl_ms = match v {
            Some(v) if !v.is_none() => Some(non_negative_int("soft_pin_ttl_ms", v)?),
            _ => None,
        };
        Ok(())
    }

    fn __repr__(&self) -> String {
        let ttl = self
            .soft_pin_ttl_ms
            .map_or_else(|| "default".to_string(), |t| t.to_string());
        format!(
            "ReplicateConfig: {{ replica_num: {}, soft_pin_action: {}, soft_pin_ttl_ms: {}, \
             with_hard_pin: {}, preferred_segment: {:?}, preferred_segments: {:?}, group_ids: {:?} }}",
            self.replica_num,
            self.soft_pin_action.name(),
            ttl,
            self.with_hard_pin,
            self.preferred_segment,
            self.preferred_segments,
            self.group_ids
        )
    }
}

/// Keyword arguments the constructor accepts: the attribute names.
const FIELDS: &[&str] = &[
    "replica_num",
    "with_hard_pin",
    "preferred_segment",
    "preferred_segments",
    "soft_pin_action",
    "soft_pin_ttl_ms",
    "group_ids",
    "nof_replica_num",
    "dfs_replica_num",
    "preferred_nof_segments",
    "prefer_alloc_in_same_node",
];

impl ReplicateConfig {
    /// Checks the combination and returns the placement request. A TTL with PRESERVE
    /// or DISABLE and `replica_num == 0` are INVALID_PARAMS (-600), as the contract says.
    pub fn placement(&self) -> Result<Placement, MooncakeError> {
        if self.replica_num == 0 {
            return Err(MooncakeError::invalid("replica_num must be at least 1"));
        }
        let soft_pin = match (self.soft_pin_action, self.soft_pin_ttl_ms) {
            (SoftPinAction::ENABLE, ttl_ms) => SoftPin::Enable { ttl_ms },
            (SoftPinAction::PRESERVE, None) => SoftPin::Preserve,
            (SoftPinAction::DISABLE, None) => SoftPin::Disable,
            (action, Some(_)) => {
                return Err(MooncakeError::invalid(format!(
                    "soft_pin_ttl_ms is only valid with SoftPinAction.ENABLE, not {}",
                    action.name()
                )))
            }
        };
        let mut preferred = Vec::new();
        for s in std::iter::once(&self.preferred_segment).chain(&self.preferred_segments) {
            if !s.is_empty() && !preferred.contains(s) {
                preferred.push(s.clone());
            }
        }
        Ok(Placement {
            replica_num: self.replica_num as usize,
            with_hard_pin: self.with_hard_pin,
            preferred_segments: preferred,
            soft_pin,
            avoid_segments: Vec::new(),
        })
    }
}

/// Reads the optional `config` argument of a put: `None` means the defaults.
pub fn placement_of(
    config: Option<&Bound<'_, ReplicateConfig>>,
) -> Result<Placement, MooncakeError> {
    match config {
        None => Ok(Placement::default()),
        Some(c) => c.borrow().placement(),
    }
}
