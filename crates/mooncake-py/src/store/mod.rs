//! `NativeStore`: the native half of `mooncake.store.MooncakeDistributedStore`.
//!
//! The Python class subclasses this one and only overrides `setup()` (its three
//! calling forms are easier to get exactly right in Python); every data-path method
//! is inherited from here unchanged, so no Python frame sits on the hot path.
//!
//! Layout: [`session`] (client + runtime, shared by in-flight calls), [`setup`],
//! [`bytes_ops`] (values as Python buffers), [`zero_copy`] (caller pointers),
//! [`ranges`] (`get_into_ranges`), [`meta`] (exist, size, remove, health, close),
//! [`dummy`] (`setup_dummy`: every call forwarded to the node's real client),
//! [`tasks`] (copy and move tasks).
//! This file is only the Python-facing signatures; each delegates to those modules.

mod bytes_ops;
mod dummy;
mod meta;
mod ranges;
mod session;
mod sessions;
mod setup;
mod tasks;
mod zero_copy;

use crate::codes;
use crate::handle::BufferHandle;
use crate::replicate::ReplicateConfig;
use bytes_ops::{handle_of, WriteMode};
use mooncake_common::MooncakeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use session::Session;
use std::sync::{Arc, RwLock};
use zero_copy::PtrWrite;

type Cfg<'a, 'py> = Option<&'a Bound<'py, ReplicateConfig>>;
/// One key's replicas as `_replica_descs` answers: `(code, size, [(segment,
/// endpoint, address, size)])`.
type ReplicaAnswer = (i32, u64, Vec<(String, String, u64, u64)>);

#[pyclass(subclass, module = "mooncake._mooncake")]
pub struct NativeStore {
    session: RwLock<Option<Arc<Session>>>,
    /// Set instead of `session` by `setup_dummy`: calls go to the real client.
    dummy: RwLock<Option<Arc<mooncake_realclient::DummyClient>>>,
    /// Open put and get sessions (`batch_put_session_*`, `batch_get_session_*`).
    sessions: sessions::Sessions,
}

impl NativeStore {
    /// The live session, or INVALID_PARAMS before `setup()` / after `close()`.
    fn session(&self) -> Result<Arc<Session>, MooncakeError> {
        self.session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(codes::not_set_up)
    }
}

#[pymethods]
impl NativeStore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        NativeStore {
            session: RwLock::new(None),
            dummy: RwLock::new(None),
            sessions: sessions::Sessions::default(),
        }
    }

    /// Native end of `setup()`: `(code, message)`, message empty on success.
    /// `ssd_offload_path` / `enable_ssd_offload`: the SSD tier SGLang asks for (the
    /// `MOONCAKE_OFFLOAD_*` environment where these are not given). `tenant_id`: the
    /// tenant this client declares (`MOONCAKE_TENANT_ID` where not given); a master
    /// with authentication refuses it unless it is the token's.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (local_hostname, metadata_server, global_segment_size, local_buffer_size, protocol, device_name, master_server_address, ssd_offload_path=None, enable_ssd_offload=None, tenant_id=None))]
    fn _setup<'py>(
        &self,
        py: Python<'py>,
        local_hostname: String,
        metadata_server: String,
        global_segment_size: Bound<'py, PyAny>,
        local_buffer_size: Bound<'py, PyAny>,
        protocol: String,
        device_name: String,
        master_server_address: String,
        ssd_offload_path: Option<String>,
        enable_ssd_offload: Option<bool>,
        tenant_id: Option<String>,
    ) -> (i32, String) {
        let args = setup::SetupArgs {
            local_hostname,
            metadata_server,
            global_segment_size,
            local_buffer_size,
            protocol,
            device_name,
            master_server_address,
            ssd_offload_path,
            enable_ssd_offload,
            tenant_id,
        };
        match self.setup_impl(py, args) {
            Ok(()) => (0, String::new()),
            Err(e) => (codes::code(&e), e.to_string()),
        }
    }

    /// Dummy mode: every call goes to the node's real client (`mooncake_client`) at
    /// `server_address`. 0, or -900 when nothing answers there, -600 for a bad
    /// address or a store already set up.
    fn setup_dummy(
        &self,
        py: Python<'_>,
        mem_pool_size: u64,
        local_buffer_size: u64,
        server_address: &str,
    ) -> i32 {
        let r = self.setup_dummy_impl(py, mem_pool_size, local_buffer_size, server_address);
        if let Err(e) = &r {
            eprintln!("mooncake: setup_dummy() failed: {e}");
        }
        codes::status(&r)
    }

    /// One code per key: 0 removed, -704 missing, -706 while a lease is held
    /// (unless `force`).
    #[pyo3(signature = (keys, force=false))]
    fn batch_remove(&self, py: Python<'_>, keys: Vec<String>, force: bool) -> Vec<i32> {
        self.batch_remove_impl(py, &keys, force)
    }

    /// Native end of `create_copy_task`: `(high, low, code)`.
    fn _create_copy_task(
        &self,
        py: Python<'_>,
        key: &str,
        targets: Vec<String>,
    ) -> tasks::IdAnswer {
        self.create_copy_task_impl(py, key, &targets)
    }

    /// Native end of `create_move_task`: `(high, low, code)`.
    fn _create_move_task(
        &self,
        py: Python<'_>,
        key: &str,
        source: &str,
        target: &str,
    ) -> tasks::IdAnswer {
        self.create_move_task_impl(py, key, source, target)
    }

    /// Native end of `query_task`: `(code, type, status, created_ms, updated_ms,
    /// assigned_client, message)`.
    fn _query_task(&self, py: Python<'_>, high: u64, low: u64) -> tasks::TaskAnswer {
        self.query_task_impl(py, (high, low))
    }

    /// Native end of `get_replica_desc` / `batch_get_replica_desc`: per key
    /// `(code, size, [(segment, endpoint, address, size)])`.
    fn _replica_descs(&self, py: Python<'_>, keys: Vec<String>) -> Vec<ReplicaAnswer> {
        self.replica_descs_impl(py, &keys)
            .into_iter()
            .map(|r| match r {
                Ok((size, reps)) => (
                    0,
                    size,
                    reps.into_iter()
                        .map(|v| (v.segment, v.endpoint, v.address, v.size))
                        .collect(),
                ),
                Err(e) => (codes::code(&e), 0, Vec::new()),
            })
            .collect()
    }

    #[pyo3(signature = (key, value, config=None))]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        config: Cfg,
    ) -> PyResult<i32> {
        Ok(codes::status(&self.put_value(
            py,
            key,
            value,
            config,
            WriteMode::Insert,
        )?))
    }

    #[pyo3(signature = (key, value, config=None))]
    fn upsert(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        config: Cfg,
    ) -> PyResult<i32> {
        Ok(codes::status(&self.put_value(
            py,
            key,
            value,
            config,
            WriteMode::Upsert,
        )?))
    }

    #[pyo3(signature = (key, *parts, config=None))]
    fn put_parts(
        &self,
        py: Python<'_>,
        key: &str,
        parts: &Bound<'_, PyTuple>,
        config: Cfg,
    ) -> PyResult<i32> {
        Ok(codes::status(&self.put_parts_impl(
            py,
            key,
            parts,
            config,
            WriteMode::Insert,
        )?))
    }

    /// `put_parts` that inserts or replaces.
    #[pyo3(signature = (key, *parts, config=None))]
    fn upsert_parts(
        &self,
        py: Python<'_>,
        key: &str,
        parts: &Bound<'_, PyTuple>,
        config: Cfg,
    ) -> PyResult<i32> {
        Ok(codes::status(&self.put_parts_impl(
            py,
            key,
            parts,
            config,
            WriteMode::Upsert,
        )?))
    }

    #[pyo3(signature = (keys, values, config=None))]
    fn put_batch(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        values: &Bound<'_, PyAny>,
        config: Cfg,
    ) -> PyResult<i32> {
        Ok(codes::status(&self.put_batch_impl(
            py,
            keys,
            values,
            config,
            WriteMode::Insert,
        )?))
    }

    /// `put_batch` that inserts or replaces.
    #[pyo3(signature = (keys, values, config=None))]
    fn upsert_batch(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        values: &Bound<'_, PyAny>,
        config: Cfg,
    ) -> PyResult<i32> {
        Ok(codes::status(&self.put_batch_impl(
            py,
            keys,
            values,
            config,
            WriteMode::Upsert,
        )?))
    }

    fn get<'py>(&self, py: Python<'py>, key: &str) -> Bound<'py, PyBytes> {
        self.get_bytes(py, key)
            .unwrap_or_else(|_| PyBytes::new(py, b""))
    }

    fn get_batch<'py>(&self, py: Python<'py>, keys: Vec<String>) -> Vec<Bound<'py, PyBytes>> {
        let values = self.get_values(py, &keys);
        values
            .iter()
            .map(|r| PyBytes::new(py, r.as_deref().unwrap_or_default()))
            .collect()
    }

    fn get_buffer(&self, py: Python<'_>, key: &str) -> Option<BufferHandle> {
        handle_of(self.get_value(py, key))
    }

    fn batch_get_buffer(&self, py: Python<'_>, keys: Vec<String>) -> Vec<Option<BufferHandle>> {
        self.get_values(py, &keys)
            .into_iter()
            .map(handle_of)
            .collect()
    }

    fn is_exist(&self, py: Python<'_>, key: &str) -> i32 {
        self.is_exist_impl(py, key)
    }

    fn batch_is_exist(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<Vec<i32>> {
        self.batch_is_exist_impl(py, keys)
    }

    fn get_size(&self, py: Python<'_>, key: &str) -> i64 {
        self.get_size_impl(py, key)
    }

    #[pyo3(signature = (key, force=false))]
    fn remove(&self, py: Python<'_>, key: &str, force: bool) -> i32 {
        self.remove_impl(py, key, force)
    }

    #[pyo3(signature = (force=false))]
    fn remove_all(&self, py: Python<'_>, force: bool) -> i64 {
        self.remove_all_impl(py, force)
    }

    #[pyo3(signature = (regex_pattern, force=false))]
    fn remove_by_regex(&self, py: Python<'_>, regex_pattern: &str, force: bool) -> i64 {
        self.remove_by_regex_impl(py, regex_pattern, force)
    }

    fn register_buffer(&self, buffer_ptr: usize, size: usize) -> i32 {
        codes::status(&self.register_impl(buffer_ptr, size))
    }

    fn unregister_buffer(&self, buffer_ptr: usize) -> i32 {
        codes::status(&self.unregister_impl(buffer_ptr))
    }

    #[pyo3(signature = (key, buffer_ptr, size, config=None))]
    fn put_from(
        &self,
        py: Python<'_>,
        key: &str,
        buffer_ptr: usize,
        size: usize,
        config: Cfg,
    ) -> i32 {
        codes::status(&self.put_from_impl(py, key, buffer_ptr, size, config, PtrWrite::Insert))
    }

    #[pyo3(signature = (key, buffer_ptr, size, config=None))]
    fn upsert_from(
        &self,
        py: Python<'_>,
        key: &str,
        buffer_ptr: usize,
        size: usize,
        config: Cfg,
    ) -> i32 {
        codes::status(&self.put_from_impl(py, key, buffer_ptr, size, config, PtrWrite::Upsert))
    }

    fn get_into(&self, py: Python<'_>, key: &str, buffer_ptr: usize, size: usize) -> i64 {
        codes::amount(self.get_into_impl(py, key, buffer_ptr, size))
    }

    #[pyo3(signature = (keys, buffer_ptrs, sizes, config=None))]
    fn batch_put_from(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        buffer_ptrs: Vec<usize>,
        sizes: Vec<usize>,
        config: Cfg,
    ) -> Vec<i64> {
        self.batch_put_from_impl(py, &keys, &buffer_ptrs, &sizes, config, PtrWrite::Insert)
    }

    #[pyo3(signature = (keys, buffer_ptrs, sizes, config=None))]
    fn batch_upsert_from(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        buffer_ptrs: Vec<usize>,
        sizes: Vec<usize>,
        config: Cfg,
    ) -> Vec<i64> {
        self.batch_put_from_impl(py, &keys, &buffer_ptrs, &sizes, config, PtrWrite::Upsert)
    }

    fn batch_get_into(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        buffer_ptrs: Vec<usize>,
        sizes: Vec<usize>,
    ) -> Vec<i64> {
        self.batch_get_into_impl(py, &keys, &buffer_ptrs, &sizes)
    }

    #[pyo3(signature = (keys, all_buffer_ptrs, all_sizes, config=None))]
    fn batch_put_from_multi_buffers(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        all_buffer_ptrs: Vec<Vec<usize>>,
        all_sizes: Vec<Vec<usize>>,
        config: Cfg,
    ) -> Vec<i64> {
        self.batch_put_multi_impl(py, &keys, &all_buffer_ptrs, &all_sizes, config)
    }

    /// `prefer_alloc_in_same_node` is accepted for the reference's signature; reads
    /// already prefer a replica on this host.
    #[pyo3(signature = (keys, all_buffer_ptrs, all_sizes, prefer_alloc_in_same_node=false))]
    fn batch_get_into_multi_buffers(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        all_buffer_ptrs: Vec<Vec<usize>>,
        all_sizes: Vec<Vec<usize>>,
        prefer_alloc_in_same_node: bool,
    ) -> Vec<i64> {
        let _ = prefer_alloc_in_same_node;
        self.batch_get_multi_impl(py, &keys, &all_buffer_ptrs, &all_sizes)
    }

    fn get_into_ranges(
        &self,
        py: Python<'_>,
        buffer_ptrs: Vec<usize>,
        all_keys: Vec<Vec<String>>,
        all_dst_offsets: Vec<Vec<Vec<u64>>>,
        all_src_offsets: Vec<Vec<Vec<u64>>>,
        all_sizes: Vec<Vec<Vec<usize>>>,
    ) -> Vec<Vec<Vec<i64>>> {
        let ranges = ranges::Ranges {
            buffer_ptrs,
            all_keys,
            all_dst_offsets,
            all_src_offsets,
            all_sizes,
        };
        self.get_into_ranges_impl(py, &ranges)
    }

    /// Reserves one object per key of `sizes[i]` bytes, to be written in ranges; a
    /// code per key (-600 for a key with a session open already).
    #[pyo3(signature = (keys, sizes, config=None))]
    fn batch_put_session_start(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        sizes: Vec<u64>,
        config: Cfg,
    ) -> Vec<i32> {
        self.put_session_start_impl(py, &keys, &sizes, config)
    }

    /// Writes `all_sizes[i][j]` bytes from `all_buffer_ptrs[i][j]` at offset
    /// `all_dst_offsets[i][j]` of the object of session `keys[i]`; 0 per key, -600
    /// for a key without a session, with lists that disagree or a range outside it.
    fn batch_put_from_multi_buffer_ranges(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        all_buffer_ptrs: Vec<Vec<usize>>,
        all_sizes: Vec<Vec<usize>>,
        all_dst_offsets: Vec<Vec<u64>>,
    ) -> Vec<i32> {
        self.put_ranges_impl(py, &keys, &all_buffer_ptrs, &all_sizes, &all_dst_offsets)
    }

    /// Completes the sessions' objects (readable from now on); a code per key.
    fn batch_put_session_end(&self, py: Python<'_>, keys: Vec<String>) -> Vec<i32> {
        self.put_session_finish_impl(py, &keys, false)
    }

    /// Abandons the sessions' objects (their space is freed); a code per key.
    fn batch_put_session_revoke(&self, py: Python<'_>, keys: Vec<String>) -> Vec<i32> {
        self.put_session_finish_impl(py, &keys, true)
    }

    /// Looks the keys up once for ranged reads; a code per key.
    fn batch_get_session_start(&self, py: Python<'_>, keys: Vec<String>) -> Vec<i32> {
        self.get_session_start_impl(py, &keys)
    }

    /// Reads `all_sizes[i][j]` bytes at offset `all_src_offsets[i][j]` of session
    /// `keys[i]`'s object into `all_buffer_ptrs[i][j]`; bytes read per key, -707 once
    /// the session's lease has run out.
    fn batch_get_into_multi_buffer_ranges(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        all_buffer_ptrs: Vec<Vec<usize>>,
        all_sizes: Vec<Vec<usize>>,
        all_src_offsets: Vec<Vec<u64>>,
    ) -> Vec<i64> {
        self.get_ranges_impl(py, &keys, &all_buffer_ptrs, &all_sizes, &all_src_offsets)
    }

    /// Forgets the keys' get sessions; 0.
    fn batch_get_session_end(&self, keys: Vec<String>) -> i32 {
        self.get_session_end_impl(&keys)
    }

    fn get_hostname(&self) -> String {
        self.hostname_impl()
    }

    /// How this client's location cache did: `hits` (gets served by a speculative
    /// read, one round trip), `misses` (nothing remembered: the read waited for the
    /// lookup), `stale` (the remembered location was refused and read again) and
    /// `entries` (locations remembered now).
    fn location_cache_stats(&self, py: Python<'_>) -> std::collections::HashMap<&'static str, u64> {
        self.location_cache_stats_impl(py)
    }

    fn health_check(&self, py: Python<'_>) -> i32 {
        self.health_impl(py)
    }

    fn close(&self, py: Python<'_>) -> i32 {
        self.close_impl(py)
    }
}
