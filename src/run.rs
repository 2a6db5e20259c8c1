//! Starting a run: `run` and `Builder`.

use crate::devices::Devices;
use crate::devices::cmdline;
use crate::devices::mapping::{Acquire, Given, GivenNet, manifest_json};
use crate::devices::{DeviceError, DeviceErrorKind};
use crate::fiber::{CoreSet, Runtime, Settings};
use crate::fiber::{DEFAULT_STACK_SIZE, Events, Trace};
use crate::net::link::LinkEnd;
use crate::reactor::{self, ReactorEvents, ReactorGuard};
use std::panic::resume_unwind;
use std::path::Path;
use std::sync::Arc;

/// Runs `main` as the first task of a new scheduler on this thread, with the
/// devices of `devices`, and returns its value once every task is done.
///
/// ```
/// let v = mkernel::run((), |()| {
///     let p = mkernel::spawn(|| 20);
///     p.join().unwrap() + 22
/// });
/// assert_eq!(v, 42);
/// ```
///
/// A panic of `main` propagates out of `run` with its payload unchanged; a
/// rule violation stops every task and `run` panics with the
/// [`Violation`](crate::Violation).
pub fn run<D: Devices, T: 'static>(devices: D, main: impl FnOnce(D::Output) -> T + 'static) -> T {
    Builder::new().run(devices, main)
}

/// Settings of a run, and a programmatic device mapping (tests, demos).
///
/// ```
/// let v = mkernel::Builder::new()
///     .stack_size(64 * 1024)
///     .seed(7)
///     .run((), |()| 1 + 1);
/// assert_eq!(v, 2);
/// ```
pub struct Builder {
    quanta: u32,
    clock_every: u32,
    stack_size: usize,
    seed: u64,
    events: Option<Box<dyn Events>>,
    given: Given,
    trace: Option<Trace>,
    cores: usize,
}

impl core::fmt::Debug for Builder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Builder")
            .field("quanta", &self.quanta)
            .field("switches_per_clock_read", &self.clock_every)
            .field("stack_size", &self.stack_size)
            .field("seed", &self.seed)
            .field("events", &self.events.as_ref().map(|_| "<custom>"))
            .field("given", &self.given)
            .field("trace", &self.trace)
            .field("cores", &self.cores)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Default settings: unlimited quanta, [`DEFAULT_STACK_SIZE`], seed 0,
    /// the platform's event source, devices from the command line.
    #[must_use]
    pub fn new() -> Builder {
        Builder {
            quanta: u32::MAX,
            clock_every: crate::fiber::DEFAULT_SWITCHES_PER_CLOCK_READ,
            stack_size: DEFAULT_STACK_SIZE,
            seed: 0,
            events: None,
            given: Given::default(),
            trace: None,
            cores: 1,
        }
    }

    /// How many cores the run uses (default 1): the main task's core and
    /// `n - 1` more schedulers, each on its own thread with its own run
    /// queue, stacks and event source. Tasks never move between cores:
    /// [`spawn`](crate::spawn) keeps a child on its parent's core, and
    /// [`call`](crate::call) and [`parallel`](crate::parallel) are how work
    /// reaches the others. Devices stay on the first core (they are not
    /// `Send`). 0 counts as 1.
    ///
    /// Hosted only: on Solo5 (one core) a run with `n > 1` does not start
    /// ([`DeviceErrorKind::Platform`](crate::devices::DeviceErrorKind::Platform)). Nor with a replaced event source
    /// ([`events`](Builder::events)): each core has the platform's own.
    ///
    /// ```
    /// let cores = mkernel::Builder::new().cores(2).run((), |()| {
    ///     mkernel::parallel(|_| mkernel::current_core(), vec![(); 2])
    /// });
    /// let cores: Vec<usize> = cores.into_iter().map(Result::unwrap).collect();
    /// assert_eq!(cores, [0, 1]);
    /// ```
    #[must_use]
    pub fn cores(mut self, n: usize) -> Builder {
        self.cores = n.max(1);
        self
    }

    /// Records a trace of the run's scheduling (spawns, runs, suspensions
    /// with their reason, wake-ups with their waker, ends, device notices)
    /// and writes it when the run ends, as [`Trace`] says.
    ///
    /// Without this, a run records a trace when the environment asks
    /// (hosted: `MKERNEL_TRACE=PATH`, with `MKERNEL_TRACE_EVENTS=N` for the
    /// ring's size) or its application arguments start with
    /// `--mkernel:trace` (both platforms: the trace goes to the console).
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("mk-builder-trace-{}.json", std::process::id()));
    /// mkernel::Builder::new()
    ///     .trace(mkernel::Trace::file(&path).capacity(4096))
    ///     .run((), |()| mkernel::yield_now());
    /// assert!(std::fs::read_to_string(&path).unwrap().contains("\"cat\":\"run\""));
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn trace(mut self, trace: Trace) -> Builder {
        self.trace = Some(trace);
        self
    }

    /// How many non-suspending runtime calls (`spawn`, `join` of a finished
    /// task, `cancel`) a task may make before it is moved to the back of the
    /// run queue, as Miou's `quanta`. Default: unlimited (only suspensions
    /// and [`yield_now`](crate::yield_now) reschedule).
    #[must_use]
    pub fn quanta(mut self, quanta: u32) -> Builder {
        self.quanta = quanta.max(1);
        self
    }

    /// At most how many task switches may pass between two reads of the
    /// time-stamp counter while tasks switch fast (default
    /// [`DEFAULT_SWITCHES_PER_CLOCK_READ`](crate::DEFAULT_SWITCHES_PER_CLOCK_READ):
    /// 8 hosted, 1 on Solo5; 1 reads it after every switch).
    ///
    /// The scheduler goes by that reading to decide when the platform looks
    /// at devices and timers (and for [`TaskStats::max_wait`](crate::TaskStats)).
    /// It reads it after every switch anyway while tasks run a few µs or
    /// more between switches; the skipping only happens while they switch
    /// faster, where a read (~10 ns) would be a large part of a switch. On
    /// the window where such tasks start computing long slices, a hosted
    /// run still reads the clock within ~200 µs (a process-wide thread beats
    /// that often while some scheduler skips reads, and parks otherwise); on
    /// Solo5 there is no such thread, which is why the default there is 1.
    /// Set 1 hosted too to have no thread and a read after every switch.
    ///
    /// ```
    /// let (reads, switches) = mkernel::Builder::new()
    ///     .switches_per_clock_read(1)
    ///     .run((), |()| {
    ///         for _ in 0..1_000 { mkernel::yield_now(); }
    ///         let s = mkernel::stats();
    ///         (s.clock_reads, s.switches)
    ///     });
    /// assert!(reads >= switches);
    /// ```
    #[must_use]
    pub fn switches_per_clock_read(mut self, n: u32) -> Builder {
        self.clock_every = n.max(1);
        self
    }

    /// Usable stack size of every task (rounded up to 4 KiB, at least 16 KiB).
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Seed of the scheduler's random choices (which of several finished
    /// promises `join_any` picks), so that runs are reproducible.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = seed;
        self
    }

    /// Replaces the platform's event source (simulations, tests). Device
    /// arguments and [`sleep`](crate::sleep) need the platform's source and
    /// panic with a message saying so.
    pub fn events(mut self, events: impl Events + 'static) -> Builder {
        self.events = Some(Box::new(events));
        self
    }

    /// Maps net device `name` to one end of an in-memory link
    /// ([`net::link::pair`](crate::net::link::pair)). Giving any mapping
    /// here means the command line is not read for devices.
    #[must_use]
    pub fn net_link(mut self, name: &str, end: LinkEnd) -> Builder {
        self.given
            .nets
            .push((name.to_string(), GivenNet::Link(end)));
        self
    }

    /// Maps net device `name` to the TAP interface `iface` (which must exist).
    #[must_use]
    pub fn net_tap(mut self, name: &str, iface: &str) -> Builder {
        self.given
            .nets
            .push((name.to_string(), GivenNet::Tap(iface.to_string())));
        self
    }

    /// Whether TAP interfaces may offload TCP segmentation and checksums
    /// to the host's kernel, as `--net-offload=on|off` does on the command
    /// line (this setting wins over it). On by default: a TAP is opened
    /// with a virtio-net header (`IFF_VNET_HDR`), and the TCP/IP stack
    /// ([`stack()`](crate::stack())) then writes up to 64 KiB of a
    /// connection in one system call, which the kernel cuts into frames,
    /// and reads the kernel's coalesced segments whole. Off: one frame per
    /// system call each way, as a Solo5 tender does. A kernel or TAP that
    /// cannot offload is used plainly either way; in-memory links never
    /// offload.
    ///
    /// ```
    /// use mkernel::net::link;
    /// let (a, _b) = link::pair(link::Faults::default());
    /// let mtu = mkernel::Builder::new()
    ///     .net_offload(false)
    ///     .net_link("a", a)
    ///     .run(mkernel::net("a"), |(_net, cfg)| cfg.mtu);
    /// assert_eq!(mtu, 1500);
    /// ```
    #[must_use]
    pub fn net_offload(mut self, on: bool) -> Builder {
        self.given.offload = Some(on);
        self
    }

    /// Captures every frame net device `name` reads or writes into the
    /// pcap file at `path` (created or truncated), as `--pcap:NAME=FILE`
    /// does on the command line: open it with `tcpdump -r FILE` or
    /// Wireshark. For a device mapped here (`net_link`, `net_tap`).
    ///
    /// ```
    /// use mkernel::net::link;
    /// let path = std::env::temp_dir().join(format!("mk-doc-{}.pcap", std::process::id()));
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new()
    ///     .net_link("a", a)
    ///     .net_link("b", b)
    ///     .net_pcap("a", &path)
    ///     .run((mkernel::net("a"), mkernel::net("b")), |((a, _), _)| {
    ///         a.write(&[0xff; 60]).unwrap();
    ///     });
    /// // A 24-byte pcap header, then a 16-byte record header and the frame.
    /// assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 16 + 60);
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn net_pcap(mut self, name: &str, path: impl AsRef<Path>) -> Builder {
        self.given
            .pcaps
            .push((name.to_string(), path.as_ref().to_path_buf()));
        self
    }

    /// Maps block device `name` to the file at `path`.
    pub fn block_file(mut self, name: &str, path: impl AsRef<Path>) -> Builder {
        self.given
            .blocks
            .push((name.to_string(), path.as_ref().to_path_buf()));
        self
    }

    /// Sets the page (sector) size of block device `name` (default 512).
    #[must_use]
    pub fn block_sector_size(mut self, name: &str, bytes: usize) -> Builder {
        self.given.sector_sizes.push((name.to_string(), bytes));
        self
    }

    /// Sets what [`args`](crate::args) returns during the run.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Builder {
        self.given.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Like [`run`](crate::run), with these settings.
    ///
    /// This (and [`run`](crate::run), which calls it) is the only place
    /// where mkernel ends the process, when the main function cannot run
    /// ([`try_run`](Builder::try_run) returns the [`DeviceError`] instead):
    ///
    /// - with `MKERNEL_MANIFEST=1` in the environment, it prints the Solo5
    ///   manifest of `devices` on stdout and exits with status 0
    ///   ([`DeviceErrorKind::ManifestPrinted`]; this is how `cargo mkernel`
    ///   gets the manifest);
    /// - when a [`try_map`](crate::try_map) function fails (for
    ///   [`stack()`](crate::stack()): a malformed `--ipv4` flag), it prints
    ///   `error: ` and the error on stderr and exits with status 2 (a usage
    ///   error);
    /// - when the devices cannot be opened (or the command line or the
    ///   device list is wrong), it prints the reason on stderr and exits
    ///   with status 1.
    pub fn run<D: Devices, T: 'static>(
        self,
        devices: D,
        main: impl FnOnce(D::Output) -> T + 'static,
    ) -> T {
        match self.try_run(devices, main) {
            Ok(v) => v,
            Err(e) => match e.kind() {
                DeviceErrorKind::ManifestPrinted => std::process::exit(0),
                DeviceErrorKind::Map => {
                    eprintln!("error: {e}");
                    std::process::exit(2)
                }
                _ => {
                    eprintln!("{e}");
                    std::process::exit(1)
                }
            },
        }
    }

    /// Like [`run`](Builder::run), but never ends the process: when the
    /// main function cannot run, the reason is an `Err` (see
    /// [`DeviceErrorKind`]).
    ///
    /// # Errors
    ///
    /// A [`DeviceError`] when the main function did not run: a device that
    /// is not mapped or cannot be opened, a malformed command line, a
    /// failed [`try_map`](crate::try_map) function, or, with
    /// `MKERNEL_MANIFEST=1` in the environment,
    /// [`DeviceErrorKind::ManifestPrinted`] after the Solo5 manifest of
    /// `devices` was printed on stdout (a program that runs with `try_run`
    /// should then exit with status 0, as `cargo mkernel` expects).
    ///
    /// ```
    /// let r = mkernel::Builder::new()
    ///     .block_file("disk", "/nonexistent/disk.img")
    ///     .try_run(mkernel::block("disk"), |_disk| ());
    /// let msg = r.unwrap_err().to_string();
    /// assert!(msg.contains("\"disk\""), "{msg}");
    /// ```
    pub fn try_run<D: Devices, T: 'static>(
        self,
        devices: D,
        main: impl FnOnce(D::Output) -> T + 'static,
    ) -> Result<T, DeviceError> {
        console_logger();
        let mut declared = Vec::new();
        devices.declare(&mut declared);
        if std::env::var_os("MKERNEL_MANIFEST").is_some_and(|v| v == "1") {
            println!("{}", manifest_json(&declared));
            return Err(DeviceError::new(
                DeviceErrorKind::ManifestPrinted,
                "mkernel: MKERNEL_MANIFEST=1: the Solo5 manifest was printed on stdout \
                 instead of running the main function"
                    .to_string(),
            ));
        }
        let cores = self.start_cores()?;
        let (platform, events): (Option<ReactorGuard>, Box<dyn Events>) = match self.events {
            Some(e) => (None, e),
            None => (
                Some(
                    reactor::install(cores.set.as_ref().map(|c| c.waker(0))).map_err(|e| {
                        DeviceError::with_source(
                            DeviceErrorKind::Platform,
                            format!("mkernel: cannot create the event poller: {e}"),
                            e,
                        )
                    })?,
                ),
                Box::new(ReactorEvents),
            ),
        };
        if platform.is_none() && !declared.is_empty() {
            panic!(
                "mkernel: device arguments need the platform's event source, but this run replaced it with Builder::events"
            );
        }
        let trace = self.trace.or_else(trace_from_environment);
        let rt = Runtime::enter(Settings {
            events,
            publishes_due: platform.is_some(),
            quanta: self.quanta,
            stack_size: self.stack_size,
            seed: self.seed,
            max_clock_every: self.clock_every,
            trace,
            core: cores.set.clone().map(|c| (c, 0)),
        });
        let (mut ctx, _args) = Acquire::new(&declared, self.given)?;
        // The devices are opened in the main task, before `main`: a `map`
        // function runs inside the run and may do what a task does (sleep,
        // deferred block I/O, spawn), as in mkernel.
        let r = rt.block_on(move || {
            let out = devices.acquire(&mut ctx)?;
            drop(ctx);
            Ok(main(out))
        });
        drop(platform);
        drop(cores);
        match r {
            Ok(v) => v,
            Err(p) => resume_unwind(p),
        }
    }
}

/// The cores of a run beyond the first: their threads, stopped and joined
/// when dropped (also when the run unwinds).
struct Cores {
    set: Option<Arc<CoreSet>>,
    threads: Vec<crate::sys::CoreThread>,
}

impl Drop for Cores {
    fn drop(&mut self) {
        if let Some(set) = &self.set {
            set.stop();
        }
        for t in self.threads.drain(..) {
            // A core that panicked has printed why; the run's own outcome
            // is the first core's.
            t.join();
        }
    }
}

impl Builder {
    /// Starts the cores beyond the first (none with `cores(1)`).
    fn start_cores(&self) -> Result<Cores, DeviceError> {
        let n = self.cores;
        if n <= 1 {
            return Ok(Cores {
                set: None,
                threads: Vec::new(),
            });
        }
        if n > crate::sys::MAX_CORES {
            return Err(DeviceError::new(
                DeviceErrorKind::Platform,
                format!(
                    "mkernel: Builder::cores({n}): this platform gives a run at most {} core(s) \
                     (Solo5 has one; use call/parallel with one core, or cores(1))",
                    crate::sys::MAX_CORES
                ),
            ));
        }
        if self.events.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Platform,
                format!(
                    "mkernel: Builder::cores({n}) with Builder::events: each core needs the \
                     platform's event source (use one or the other)"
                ),
            ));
        }
        let platform = |e: std::io::Error| {
            DeviceError::with_source(
                DeviceErrorKind::Platform,
                format!("mkernel: cannot start {n} cores: {e}"),
                e,
            )
        };
        let set = CoreSet::new(n).map_err(platform)?;
        let mut cores = Cores {
            set: Some(set.clone()),
            threads: Vec::new(),
        };
        for k in 1..n {
            let set = set.clone();
            let (quanta, stack_size, seed, clock_every) =
                (self.quanta, self.stack_size, self.seed, self.clock_every);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let t = crate::sys::CoreThread::spawn(format!("mkernel-core-{k}"), move || {
                let guard = match reactor::install(Some(set.waker(k))) {
                    Ok(g) => g,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let rt = Runtime::enter(Settings {
                    events: Box::new(ReactorEvents),
                    publishes_due: true,
                    quanta,
                    stack_size,
                    // Each core its own choices, reproducible from the seed.
                    seed: seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    max_clock_every: clock_every,
                    trace: None,
                    core: Some((set, k)),
                });
                let _ = ready_tx.send(Ok(()));
                rt.serve();
                drop(guard);
            })
            .map_err(platform)?;
            cores.threads.push(t);
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(platform(e)),
                Err(_) => {
                    return Err(platform(std::io::Error::other(format!(
                        "core {k} stopped while starting"
                    ))));
                }
            }
        }
        Ok(cores)
    }
}

/// The trace the environment asks for: `MKERNEL_TRACE=PATH` (hosted; its
/// size from `MKERNEL_TRACE_EVENTS`), or `--mkernel:trace` at the start of
/// the application's arguments (both platforms: the console).
fn trace_from_environment() -> Option<Trace> {
    if let Some(path) = std::env::var_os("MKERNEL_TRACE").filter(|p| !p.is_empty()) {
        let mut t = Trace::file(path);
        if let Some(n) = std::env::var("MKERNEL_TRACE_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            t = t.capacity(n);
        }
        return Some(t);
    }
    cmdline::trace_option(&crate::sys::env_app_args()).then(Trace::console)
}

/// The console logger: what the crate (and the program) logs through the
/// `log` facade reaches stderr — the console under Solo5 — so that a
/// warning (a block file cut short, a device opened read-only) is seen.
/// Installed by the first run of the process unless the program installed
/// its own logger first; the level is `MKERNEL_LOG` (`off`, `error`,
/// `warn`, `info`, `debug`, `trace`), `warn` by default (a unikernel has no
/// environment: `warn` there).
fn console_logger() {
    static LOGGER: ConsoleLogger = ConsoleLogger;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = std::env::var("MKERNEL_LOG")
            .ok()
            .and_then(|v| v.parse::<log::LevelFilter>().ok())
            .unwrap_or(log::LevelFilter::Warn);
        // Err: the program has its own logger, which stays.
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level);
        }
    });
}

#[derive(Debug)]
struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "mkernel: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The unikernel's heap: its size and how much of it is allocated.
///
/// On Solo5 every allocation comes from one heap, the memory the tender
/// gives (`--mem=MB`) less the image, the TLS block and the initial stack
/// (1 MiB); task stacks, socket buffers and everything else the program
/// allocates are taken from it, and an allocation that finds no room
/// aborts the unikernel (Rust's allocation-failure handler). Hosted there
/// is no such heap (memory is the process's, overcommitted): [`heap`]
/// returns `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Heap {
    /// Bytes of the heap.
    pub size: usize,
    /// Bytes allocated now (the sizes asked for, without the allocator's
    /// own overhead of a few words per allocation).
    pub used: usize,
}

/// The heap's size and use on Solo5; `None` hosted (see [`Heap`]). The
/// TCP/IP stack derives its default connection cap from the size
/// ([`Stack::max_connections`](crate::net::stack::Stack::max_connections)).
///
/// ```
/// let h = mkernel::heap();
/// if let Some(h) = h {
///     assert!(h.used <= h.size);
/// }
/// ```
#[must_use]
pub fn heap() -> Option<Heap> {
    crate::sys::heap().map(|(size, used)| Heap { size, used })
}

#[cfg(test)]
mod tests {
    // The stack through a run: only this layer composes one.
    use super::Builder;
    use crate::net::link::{self, Faults};
    use crate::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    use std::io::Read as _;

    /// An accepted connection, IPv4 or IPv6, leaves the shared socket set
    /// for one of its own on both sides, and segments still find it there
    /// (were they not routed to it, smoltcp would reset the connection).
    #[test]
    fn connections_of_both_families_get_sets_of_their_own() {
        let (a, b) = link::pair(Faults::default());
        Builder::new().net_link("a", a).net_link("b", b).run(
            (crate::net("a"), crate::net("b")),
            |(a, b)| {
                let config = |args: &[&str]| {
                    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                    StackConfig::from_args(&args).unwrap().0
                };
                let sa = Stack::new(a, config(&["--ipv4=10.0.0.1/24", "--ipv6=fd00::1/64"]));
                let sb = Stack::new(b, config(&["--ipv4=10.0.0.2/24", "--ipv6=fd00::2/64"]));
                let own = Stack::own_sets;
                for (port, to) in [(7, "10.0.0.1:7"), (8, "[fd00::1]:8")] {
                    let l = TcpListener::bind(&sa, port).unwrap();
                    let acc = crate::fiber::spawn(move || l.accept().unwrap().0);
                    let c = TcpStream::connect(&sb, to.parse().unwrap()).unwrap();
                    let s = acc.join().unwrap();
                    let mut buf = [0u8; 4];
                    for _ in 0..3 {
                        c.write_all(b"ping").unwrap();
                        (&s).read_exact(&mut buf).unwrap();
                        assert_eq!(&buf, b"ping", "{to}");
                        s.write_all(b"pong").unwrap();
                        (&c).read_exact(&mut buf).unwrap();
                        assert_eq!(&buf, b"pong", "{to}");
                    }
                    assert_eq!((own(&sa), own(&sb)), (1, 1), "{to}");
                    drop((c, s));
                    crate::time::sleep(std::time::Duration::from_millis(50));
                }
            },
        );
    }
}
