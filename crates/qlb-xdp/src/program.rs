//! The loaded program: load it, attach it, feed it pools, read its counters, run it on a
//! test packet.

use std::net::SocketAddr;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use qlb_router::{Pool, TableLimits};

use crate::counters::XdpCounters;
use crate::error::XdpError;
use crate::layout::{self, CODEPOINTS, GENERATIONS, MAX_BACKENDS, MAX_VIPS, Settings};
use crate::tables::{self, GenerationTables};

/// The object `scripts/build-xdp.sh` builds from `bpf/qlb_xdp.c`, committed so that the
/// default build needs no clang; a test rebuilds it and compares.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/qlb_xdp.o");

const PROGRAM: &str = "qlb_xdp";

/// How the program encapsulates and how large its tables are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpOptions {
    /// The outer source of the GUE packets, and their first source port: `gue` mode's
    /// `[gue] bind`, so that backends answer to the load balancer's GUE sockets.
    pub gue_source: SocketAddr,
    /// How many consecutive source ports from `gue_source`'s a client's address hashes over,
    /// as `gue` mode's sockets.
    pub gue_ports: u16,
    /// The flow tables' capacity and idle timeout, as the userspace router's.
    pub table_limits: TableLimits,
    /// The largest Maglev table a pool may bring (the map is sized for it at load).
    pub maglev_capacity: u32,
    /// Pass every Initial up to the daemon, which answers them with Retries.
    pub initials_up: bool,
}

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AttachMode {
    /// The driver's native XDP, or generic XDP where the driver has none.
    #[default]
    Auto,
    /// Native XDP in the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic XDP in the network stack (`XDP_FLAGS_SKB_MODE`), any device.
    Generic,
}

/// What the program did with a test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `XDP_ABORTED`.
    Aborted,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_PASS`: up to the network stack and the userspace data plane.
    Pass,
    /// `XDP_TX`: out of the interface it came in on.
    Tx,
    /// `XDP_REDIRECT`: out of another interface.
    Redirect,
    /// Any other return value.
    Other(u32),
}

impl From<u32> for Action {
    fn from(value: u32) -> Self {
        match value {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            other => Self::Other(other),
        }
    }
}

/// A test run's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// What the program returned.
    pub action: Action,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's time per run.
    pub duration: Duration,
}

/// What one generation holds now, so that the next write over it can clear it.
#[derive(Default)]
struct Written {
    server_ids: Vec<[u8; 20]>,
    backend_keys: Vec<[u8; 16]>,
    backends: u32,
}

/// The XDP program, loaded; detached and unloaded on drop.
pub struct XdpProgram {
    ebpf: Ebpf,
    options: XdpOptions,
    /// The generation packets read, once one is ready.
    live: Option<u32>,
    written: [Written; GENERATIONS as usize],
    vips: Vec<[u8; 20]>,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("options", &self.options)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |error| XdpError::Map {
        map,
        reason: error.to_string(),
    }
}

fn capacity(limits: &TableLimits) -> u32 {
    u32::try_from(limits.capacity).unwrap_or(u32::MAX).max(1)
}

impl XdpProgram {
    /// Loads the program into the kernel (the verifier checks it here), its tables empty:
    /// until [`XdpProgram::install`], it passes every packet up. Needs `CAP_BPF` and
    /// `CAP_NET_ADMIN` (or root).
    pub fn load(options: XdpOptions) -> Result<Self, XdpError> {
        let table_capacity = capacity(&options.table_limits);
        let ebpf = EbpfLoader::new()
            .map_max_entries("qlb_maglev", GENERATIONS * options.maglev_capacity.max(1))
            .map_max_entries("qlb_dcid_table", table_capacity)
            .map_max_entries("qlb_tuple_table", table_capacity)
            .load(OBJECT)
            .map_err(|error| XdpError::Load(error.to_string()))?;
        let mut program = Self {
            ebpf,
            options,
            live: None,
            written: Default::default(),
            vips: Vec::new(),
        };
        program
            .xdp_mut()?
            .load()
            .map_err(|error| XdpError::Load(verifier_message(&error)))?;
        Ok(program)
    }

    fn xdp_mut(&mut self) -> Result<&mut Xdp, XdpError> {
        self.ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| XdpError::Load(format!("the object has no program {PROGRAM}")))?
            .try_into()
            .map_err(|error: aya::programs::ProgramError| XdpError::Load(error.to_string()))
    }

    fn xdp(&self) -> Result<&Xdp, XdpError> {
        self.ebpf
            .program(PROGRAM)
            .ok_or_else(|| XdpError::Load(format!("the object has no program {PROGRAM}")))?
            .try_into()
            .map_err(|error: aya::programs::ProgramError| XdpError::Load(error.to_string()))
    }

    /// Attaches the program to `interface`'s receive path.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<(), XdpError> {
        let mode = match mode {
            AttachMode::Auto => XdpMode::Default,
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        };
        self.xdp_mut()?
            .attach(interface, mode)
            .map(drop)
            .map_err(|error| XdpError::Attach {
                interface: interface.to_owned(),
                reason: error.to_string(),
            })
    }

    /// Makes `pool` the one packets are decided against, for datagrams to `vips` (the
    /// listening addresses; an unspecified address takes every address of its family on
    /// its port): the generation not in use is written whole, then one write to the
    /// settings switches every CPU to it, so no packet sees half of two pools.
    pub fn install(&mut self, pool: &Pool, vips: &[SocketAddr]) -> Result<(), XdpError> {
        if vips.len() > MAX_VIPS {
            return Err(XdpError::TooManyVips(vips.len()));
        }
        let next = self.live.map_or(0, |live| 1 - live);
        let tables = tables::build(pool, next, self.options.maglev_capacity)?;
        self.write_vips(vips)?;
        self.write_generation(next, &tables)?;
        let options = self.options;
        let settings = Settings {
            generation: next,
            flags: layout::SETTINGS_READY
                | if options.initials_up {
                    layout::SETTINGS_INITIALS_UP
                } else {
                    0
                },
            idle_timeout_ns: u64::try_from(options.table_limits.idle_timeout.as_nanos())
                .unwrap_or(u64::MAX),
            gue_source: options.gue_source.ip(),
            gue_first_port: options.gue_source.port(),
            gue_ports: options.gue_ports.max(1),
        };
        let mut map: Array<&mut MapData, [u8; 40]> = self.map_mut("qlb_settings")?;
        map.set(0, settings.to_bytes(), 0)
            .map_err(map_error("qlb_settings"))?;
        self.live = Some(next);
        Ok(())
    }

    fn map_mut<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, V>, XdpError> {
        let map = self.ebpf.map_mut(name).ok_or(XdpError::Map {
            map: name,
            reason: "not in the object".to_owned(),
        })?;
        Array::try_from(map).map_err(map_error(name))
    }

    fn hash_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, XdpError> {
        let map = self.ebpf.map_mut(name).ok_or(XdpError::Map {
            map: name,
            reason: "not in the object".to_owned(),
        })?;
        HashMap::try_from(map).map_err(map_error(name))
    }

    fn write_vips(&mut self, vips: &[SocketAddr]) -> Result<(), XdpError> {
        let keys: Vec<[u8; 20]> = vips.iter().map(|&vip| layout::vip_key(vip)).collect();
        let old = std::mem::take(&mut self.vips);
        let mut map: HashMap<&mut MapData, [u8; 20], u32> = self.hash_mut("qlb_vips")?;
        for key in old.iter().filter(|key| !keys.contains(key)) {
            map.remove(key).map_err(map_error("qlb_vips"))?;
        }
        for (index, key) in (0u32..).zip(&keys) {
            map.insert(key, index, 0).map_err(map_error("qlb_vips"))?;
        }
        self.vips = keys;
        Ok(())
    }

    fn write_generation(
        &mut self,
        generation: u32,
        tables: &GenerationTables,
    ) -> Result<(), XdpError> {
        // Until the writes are done, the generation may hold the old entries and the new:
        // a failed write leaves them all on record, for the next write to clear.
        let old = std::mem::take(&mut self.written[generation as usize]);
        let new = Written {
            server_ids: tables.server_ids.iter().map(|(key, _)| *key).collect(),
            backend_keys: tables.backend_keys.iter().map(|(key, _)| *key).collect(),
            backends: tables.backends.len() as u32,
        };
        self.written[generation as usize] = Written {
            server_ids: old
                .server_ids
                .iter()
                .chain(&new.server_ids)
                .copied()
                .collect(),
            backend_keys: old
                .backend_keys
                .iter()
                .chain(&new.backend_keys)
                .copied()
                .collect(),
            backends: old.backends.max(new.backends),
        };
        {
            let mut map: HashMap<&mut MapData, [u8; 20], u32> = self.hash_mut("qlb_server_ids")?;
            for key in &old.server_ids {
                // Absent already is fine: the map is ours alone.
                let _ = map.remove(key);
            }
            for (key, index) in &tables.server_ids {
                map.insert(key, index, 0)
                    .map_err(map_error("qlb_server_ids"))?;
            }
        }
        {
            let mut map: HashMap<&mut MapData, [u8; 16], u32> =
                self.hash_mut("qlb_backend_keys")?;
            for key in &old.backend_keys {
                let _ = map.remove(key);
            }
            for (key, index) in &tables.backend_keys {
                map.insert(key, index, 0)
                    .map_err(map_error("qlb_backend_keys"))?;
            }
        }
        {
            let mut map: Array<&mut MapData, [u8; 32]> = self.map_mut("qlb_backends")?;
            let base = generation * MAX_BACKENDS;
            let count = tables.backends.len() as u32;
            for (offset, record) in (0u32..).zip(&tables.backends) {
                map.set(base + offset, record, 0)
                    .map_err(map_error("qlb_backends"))?;
            }
            for offset in count..old.backends {
                map.set(base + offset, layout::backend_bytes(None), 0)
                    .map_err(map_error("qlb_backends"))?;
            }
        }
        {
            let capacity = self.options.maglev_capacity;
            let mut map: Array<&mut MapData, u32> = self.map_mut("qlb_maglev")?;
            for (slot, index) in (0u32..).zip(&tables.maglev) {
                map.set(generation * capacity + slot, index, 0)
                    .map_err(map_error("qlb_maglev"))?;
            }
        }
        {
            let mut map: Array<&mut MapData, [u8; 360]> = self.map_mut("qlb_configs")?;
            for (codepoint, record) in (0u32..).zip(&tables.configs) {
                map.set(generation * CODEPOINTS + codepoint, record, 0)
                    .map_err(map_error("qlb_configs"))?;
            }
        }
        let mut map: Array<&mut MapData, [u8; 32]> = self.map_mut("qlb_pools")?;
        map.set(generation, tables.pool, 0)
            .map_err(map_error("qlb_pools"))?;
        self.written[generation as usize] = new;
        Ok(())
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let map = self.ebpf.map("qlb_counters").ok_or(XdpError::Map {
            map: "qlb_counters",
            reason: "not in the object".to_owned(),
        })?;
        let map: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(map_error("qlb_counters"))?;
        let mut counters = XdpCounters::default();
        for (index, total) in (0u32..).zip(counters.values.iter_mut()) {
            let values = map.get(&index, 0).map_err(map_error("qlb_counters"))?;
            *total = values.iter().sum();
        }
        Ok(counters)
    }

    /// Runs the program on `frame` (an Ethernet frame) as if it had arrived on the interface
    /// `ingress_ifindex` of the calling thread's network namespace, `repeat` times
    /// (`BPF_PROG_TEST_RUN`); the flow tables keep what the runs record.
    pub fn test_run(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestOutcome, XdpError> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        // Room for the largest encapsulation (outer IPv6, UDP, GUE).
        let mut out = vec![0u8; frame.len() + 64];
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat: repeat.max(1),
            ..TestRunOptions::default()
        };
        let result = self
            .xdp()?
            .test_run(options)
            .map_err(|error| XdpError::TestRun(error.to_string()))?;
        out.truncate(result.data_size_out as usize);
        Ok(TestOutcome {
            action: Action::from(result.return_value),
            frame: out,
            duration: result.duration,
        })
    }
}

/// A load error with the verifier's log, when there is one, kept to its end.
fn verifier_message(error: &aya::programs::ProgramError) -> String {
    let text = error.to_string();
    match error {
        aya::programs::ProgramError::LoadError { verifier_log, .. } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{text}: {}", tail.join("\n"))
        }
        _ => text,
    }
}
