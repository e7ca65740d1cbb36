//! The scheduler of `relocache build`: a ready queue of the targets whose deps
//! are done (lowest dependency-order index first), `jobs` worker threads
//! taking from it, dependents of a failed target skipped while the others
//! finish, and a built target's [`StoreJob`] handed off so that its worker can
//! start the next command. It decides only when and where a target is
//! processed; what happens to one is [`super::target`]'s. It must never
//! compute a key, run a command or touch the depot itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;
use std::time::Instant;

use super::account;
use super::ctx::{Ctx, DepOut, DepOuts};
use super::report::{report, BuildOptions, Outcome, TargetReport};
use super::target::{process, StoreJob};
use crate::report::Reporter;

/// Processes every target of `order` (a dependency order) on `opts.jobs`
/// workers; returns their reports in that order, once every store is done.
pub(super) fn run(
    ctx: &Ctx<'_>,
    order: &[String],
    forced: &BTreeSet<String>,
    opts: &BuildOptions,
    reporter: &dyn Reporter,
    started: Instant,
) -> Vec<TargetReport> {
    let n = order.len();
    let index: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    for (i, name) in order.iter().enumerate() {
        for d in &ctx.manifest.targets[name].deps {
            dependents[index[d.as_str()]].push(i);
            waiting[i] += 1;
        }
    }
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.jobs
    };
    let workers = Workers {
        ctx,
        order,
        forced,
        opts,
        reporter,
        started,
        dependents,
        jobs,
        sched: Mutex::new(Sched {
            ready: (0..n).filter(|i| waiting[*i] == 0).collect(),
            waiting,
            done: 0,
            results: vec![None; n],
            outs: HashMap::new(),
        }),
        cv: Condvar::new(),
        next_worker: AtomicUsize::new(0),
        storing: AtomicUsize::new(0),
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.min(n.max(1)) {
            s.spawn(|| workers.work(s));
        }
    });
    let g = workers.sched.into_inner().unwrap();
    g.results
        .into_iter()
        .map(|r| r.expect("every target finishes"))
        .collect()
}

/// The queue the workers share, under one lock.
struct Sched {
    /// Targets whose deps are all done, by index in the order.
    ready: BTreeSet<usize>,
    /// Per target, how many of its deps are not done yet.
    waiting: Vec<usize>,
    /// How many targets have a result.
    done: usize,
    results: Vec<Option<TargetReport>>,
    /// The outputs of the targets that hit or built, for their dependents.
    outs: HashMap<String, Arc<DepOut>>,
}

/// Everything the workers share: the build's inputs and the queue.
struct Workers<'w, 'c> {
    ctx: &'w Ctx<'c>,
    order: &'w [String],
    forced: &'w BTreeSet<String>,
    opts: &'w BuildOptions,
    reporter: &'w dyn Reporter,
    started: Instant,
    /// Per target, the indices of the targets that depend on it directly.
    dependents: Vec<Vec<usize>>,
    jobs: usize,
    sched: Mutex<Sched>,
    cv: Condvar,
    next_worker: AtomicUsize,
    /// Stores run beside the workers, at most `jobs` at a time; past that a
    /// worker stores its own target before it takes the next.
    storing: AtomicUsize,
}

/// A built target's store, with what it needs once its worker moved on.
type Handoff<'c> = (StoreJob<'c>, Vec<u8>, Vec<u8>, Option<DepOut>);

impl<'w, 'c> Workers<'w, 'c> {
    /// One worker: takes ready targets until every target is done.
    fn work<'s>(&'s self, s: &'s Scope<'s, '_>) {
        let worker = self.next_worker.fetch_add(1, Ordering::Relaxed);
        while let Some((i, deps)) = self.next_ready() {
            let t = &self.ctx.manifest.targets[&self.order[i]];
            self.reporter.target_started(&t.name);
            let start_ms = self.started.elapsed().as_millis() as u64;
            let is_forced = self.forced.contains(&t.name);
            let (mut done, out, job) =
                process(self.ctx, t, &deps, is_forced, self.opts, self.reporter);
            done.start_ms = start_ms;
            done.worker = worker;
            let job = match job {
                Some(job) => Some((job, done.stdout.clone(), done.stderr.clone(), out.clone())),
                None => {
                    account::finished(&self.ctx.usage, &done, out.as_ref(), is_forced);
                    None
                }
            };
            self.publish(i, done, out, worker);
            if let Some(job) = job {
                self.hand_off(s, i, job, is_forced);
            }
        }
    }

    /// Waits for a ready target and takes it with its visible deps'
    /// outputs; `None` once every target is done.
    fn next_ready(&self) -> Option<(usize, DepOuts<'c>)> {
        let mut g = self.sched.lock().unwrap();
        loop {
            if let Some(i) = g.ready.pop_first() {
                let deps: DepOuts<'_> = self.ctx.visible[&self.order[i]]
                    .iter()
                    .filter_map(|d| g.outs.get(*d).map(|o| (*d, o.clone())))
                    .collect();
                return Some((i, deps));
            }
            if g.done == self.order.len() {
                return None;
            }
            g = self.cv.wait(g).unwrap();
        }
    }

    /// Records target `i`'s result: on success its dependents whose deps
    /// are now all done become ready; on failure every dependent, direct or
    /// not, is skipped naming it.
    fn publish(&self, i: usize, done: TargetReport, out: Option<DepOut>, worker: usize) {
        let name = &self.order[i];
        let mut g = self.sched.lock().unwrap();
        self.reporter.target_finished(&done);
        let ok = out.is_some();
        if let Some(o) = out {
            g.outs.insert(name.clone(), Arc::new(o));
        }
        g.results[i] = Some(done);
        g.done += 1;
        let mut stack = vec![(i, name.clone())];
        while let Some((j, cause)) = stack.pop() {
            for &k in &self.dependents[j] {
                if ok && j == i {
                    g.waiting[k] -= 1;
                    if g.waiting[k] == 0 {
                        g.ready.insert(k);
                    }
                } else if g.results[k].is_none() {
                    let mut r = report(&self.order[k], None, Outcome::Skipped, Instant::now());
                    r.start_ms = self.started.elapsed().as_millis() as u64;
                    r.worker = worker;
                    r.error = Some(format!("dependency `{cause}` failed"));
                    self.reporter.target_finished(&r);
                    g.results[k] = Some(r);
                    g.done += 1;
                    stack.push((k, cause.clone()));
                }
            }
        }
        self.cv.notify_all();
    }

    /// Stores target `i` on a thread of its own while fewer than `jobs`
    /// stores run, else on this worker; then adds the outcome to its report.
    fn hand_off<'s>(&'s self, s: &'s Scope<'s, '_>, i: usize, job: Handoff<'c>, is_forced: bool) {
        let (job, stdout, stderr, out) = job;
        let background = self
            .storing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| {
                (k < self.jobs).then_some(k + 1)
            })
            .is_ok();
        let store = move || {
            let (stored, warnings) = job.run(self.ctx, &stdout, &stderr);
            for w in &warnings {
                self.reporter.warning(&w.message);
            }
            let mut g = self.sched.lock().unwrap();
            let r = g.results[i].as_mut().expect("published before its store");
            r.stored = stored;
            r.warnings.extend(warnings);
            account::finished(&self.ctx.usage, r, out.as_ref(), is_forced);
            if background {
                self.storing.fetch_sub(1, Ordering::AcqRel);
            }
        };
        if background {
            s.spawn(store);
        } else {
            store();
        }
    }
}
