//! What a report says about the machine: its CPU and kernel, and how busy
//! other processes kept it (Linux, from `/proc`; `None` elsewhere).

/// The CPU model, the number of cores, the OS (and Linux's release).
pub fn describe() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(kernel) => format!("{cpu}, {cores} cores, Linux {}", kernel.trim()),
        Err(_) => format!("{cpu}, {cores} cores, {}", std::env::consts::OS),
    }
}

/// The one-minute load average, as `/proc/loadavg` says it.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// CPU time so far: the whole machine's (busy and all) and this process's
/// with its waited-for children, in clock ticks.
pub struct CpuTimes {
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuTimes {
    /// The times now; `None` without `/proc`.
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let cpu: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = cpu.get(3)? + cpu.get(4)?;
        let busy = cpu.get(..8)?.iter().sum::<u64>() - idle;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        let after_name = own.rsplit_once(')')?.1;
        let times: Vec<u64> = after_name
            .split_whitespace()
            .skip(11)
            .take(4)
            .map_while(|v| v.parse().ok())
            .collect();
        Some(CpuTimes {
            busy,
            total: busy + idle,
            ours: times.iter().sum(),
        })
    }

    /// The share of all CPU time since `before` that other processes took.
    pub fn others_share_since(&self, before: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let busy = self.busy.saturating_sub(before.busy);
        let ours = self.ours.saturating_sub(before.ours);
        busy.saturating_sub(ours) as f64 / total
    }
}
