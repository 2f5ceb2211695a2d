//! The series every node exports about itself, whatever its kind: `wallet_build_info` (1,
//! labelled with the component and the version it was built from) and the standard process
//! series Prometheus' client libraries export (`process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`), read from `/proc` at each scrape. Off
//! Linux the process series stay 0.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    component: &'static str,
    version: &'static str,
}

pub struct ProcessMetrics {
    resident: Gauge,
    virtual_memory: Gauge,
    cpu: Counter<f64, AtomicU64>,
    /// CPU seconds already counted: the counter only moves forward, by what /proc adds.
    cpu_counted: Mutex<f64>,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl ProcessMetrics {
    /// Registers the series; `component` is "write-node" or "read-node", `version` its
    /// crate's version (`env!("CARGO_PKG_VERSION")` there).
    pub fn register(
        registry: &mut Registry,
        component: &'static str,
        version: &'static str,
    ) -> ProcessMetrics {
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "wallet_build_info",
            "1, labelled with the node's component and the version it was built from",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels { component, version })
            .set(1);
        let metrics = ProcessMetrics {
            resident: Gauge::default(),
            virtual_memory: Gauge::default(),
            cpu: Counter::default(),
            cpu_counted: Mutex::new(0.0),
            open_fds: Gauge::default(),
            max_fds: Gauge::default(),
            start_time: Gauge::default(),
        };
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            metrics.resident.clone(),
        );
        registry.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            metrics.virtual_memory.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            metrics.cpu.clone(),
        );
        registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            metrics.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            metrics.max_fds.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            metrics.start_time.clone(),
        );
        metrics.refresh();
        metrics
    }

    /// Reads `/proc/self` into the series (before each scrape).
    pub fn refresh(&self) {
        #[cfg(target_os = "linux")]
        if let Err(error) = self.read_proc() {
            tracing::debug!(%error, "reading /proc/self for the process series");
        }
    }

    #[cfg(target_os = "linux")]
    fn read_proc(&self) -> procfs::ProcResult<()> {
        use procfs::WithCurrentSystemInfo as _;
        let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let process = procfs::process::Process::myself()?;
        let stat = process.stat()?;
        self.resident.set(to_i64(stat.rss_bytes().get()));
        self.virtual_memory.set(to_i64(stat.vsize));
        let ticks = procfs::ticks_per_second() as f64;
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        let mut counted = self.cpu_counted.lock().unwrap_or_else(|e| e.into_inner());
        if cpu > *counted {
            self.cpu.inc_by(cpu - *counted);
            *counted = cpu;
        }
        drop(counted);
        self.open_fds.set(to_i64(process.fd_count()? as u64));
        if let Ok(limits) = process.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            self.max_fds.set(to_i64(max));
        }
        let boot = procfs::boot_time_secs()? as f64;
        self.start_time.set(boot + stat.starttime as f64 / ticks);
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_process_series_describe_this_process() {
        let mut registry = Registry::default();
        let metrics = ProcessMetrics::register(&mut registry, "test", "1.2.3");
        let burn = std::time::Instant::now();
        while burn.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(burn.elapsed());
        }
        metrics.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|line| line.starts_with(name) && !line.starts_with('#'))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") > 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert!(
            text.contains(r#"wallet_build_info{component="test",version="1.2.3"} 1"#),
            "{text}"
        );
    }
}
