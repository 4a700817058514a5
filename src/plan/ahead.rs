//! Planning on two cores: a second thread checks each entry alone
//! ([`Prepare::entry`]: its URI, the filters, its local path and URL) a
//! batch ahead, while this thread reads the inputs and places each entry
//! among those before it ([`Planner::push_prepared`]: duplicates,
//! collisions, the shard), in input order. The jobs come out in the same
//! order, with the same refusals, as from [`Planner::push_planned`] alone;
//! only when differs: a refusal may come back from a later entry's
//! [`Sink::push`], or from [`Sink::settle`]. After a refusal nothing taken
//! before it is placed (the reading ends, or a listing, which settles
//! before each link, skips that one link).

use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{Planned, Planner, Prepare, Prepared};
use crate::input::read::Sink;
use crate::input::{Entry, InputError};

/// Entries a batch holds: large enough that handing one over costs
/// nothing per entry, small enough that a short input is not held up.
const BATCH: usize = 1024;

/// The planner, the entries read and not yet placed, and the thread
/// checking them; each job goes to `f` once placed.
pub(crate) struct Ahead<'f> {
    planner: Planner,
    f: &'f mut dyn FnMut(Planned),
    batch: Vec<Entry>,
    /// The checks, for the thread (started at the first full batch: a
    /// short input plans on this thread alone).
    prepare: Prepare,
    worker: Option<Worker>,
    /// Batches handed over and not yet back.
    in_flight: usize,
}

/// A batch checked: the entries as sent, what was found of each, and the
/// text that refers to (nothing moved but the batch itself).
struct Checked {
    entries: Vec<Entry>,
    found: Vec<Prepared>,
    text: String,
}

/// The checking thread and its two ends.
struct Worker {
    to: mpsc::Sender<Vec<Entry>>,
    from: mpsc::Receiver<Checked>,
    thread: JoinHandle<()>,
}

impl Sink for Ahead<'_> {
    /// Takes the next entry read; places those whose checks are back.
    /// Keeps at most two batches in flight.
    fn push(&mut self, e: Entry) -> Result<(), InputError> {
        self.batch.push(e);
        if self.batch.len() < BATCH {
            return Ok(());
        }
        if !self.hand_over() {
            return self.place_here();
        }
        while self.in_flight > 1 {
            self.place_one()?;
        }
        Ok(())
    }

    /// Places every entry taken, in order.
    fn settle(&mut self) -> Result<(), InputError> {
        while self.in_flight > 0 {
            self.place_one()?;
        }
        // A part batch is checked here: a thread round trip would cost
        // more than the checks (and a listing settles after every link).
        self.place_here()
    }
}

impl<'f> Ahead<'f> {
    /// Returns an empty pipeline into `planner`, handing jobs to `f`.
    pub(crate) fn new(planner: Planner, f: &'f mut dyn FnMut(Planned)) -> Ahead<'f> {
        Ahead {
            prepare: planner.prepare(),
            planner,
            f,
            batch: Vec::new(),
            worker: None,
            in_flight: 0,
        }
    }

    /// Sends the batch to the checking thread, started now if need be.
    /// Returns false when there is none (the batch stays here).
    fn hand_over(&mut self) -> bool {
        if self.worker.is_none() {
            self.worker = start(self.prepare.clone());
        }
        let Some(w) = &self.worker else {
            return false;
        };
        let batch = std::mem::take(&mut self.batch);
        if w.to.send(batch).is_err() {
            self.thread_ended();
        }
        self.in_flight += 1;
        true
    }

    /// Checks and places the batch on this thread.
    fn place_here(&mut self) -> Result<(), InputError> {
        for e in std::mem::take(&mut self.batch) {
            let placed = self.planner.push_planned(e);
            self.take(placed)?;
        }
        Ok(())
    }

    /// The checking thread ended while this end of both its channels was
    /// open: only a panic does that, and it is this run's panic (raised
    /// here, before any batch could be placed out of its turn).
    fn thread_ended(&mut self) -> ! {
        match self.worker.take().map(|w| w.thread.join()) {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => unreachable!("the checking thread ended with its channels open"),
        }
    }

    /// Places the oldest batch in flight.
    fn place_one(&mut self) -> Result<(), InputError> {
        let Some(w) = &self.worker else {
            self.in_flight = 0;
            return Ok(());
        };
        let checked = match w.from.recv() {
            Ok(checked) => checked,
            // The thread is gone with batches in flight: only a panic
            // ends it early, and it is this run's panic.
            Err(mpsc::RecvError) => self.thread_ended(),
        };
        self.in_flight -= 1;
        let Checked {
            mut entries,
            found,
            text,
        } = checked;
        for (e, prepared) in entries.iter_mut().zip(found) {
            let placed = self.planner.push_prepared(e, prepared, &text);
            self.take(placed)?;
        }
        Ok(())
    }

    /// Hands a placed entry's job to `f`. A refusal drops every entry
    /// taken after it (and the thread checking them).
    fn take(&mut self, placed: Result<Option<Planned>, InputError>) -> Result<(), InputError> {
        match placed {
            Ok(Some(job)) => (self.f)(job),
            Ok(None) => {}
            Err(err) => {
                self.batch.clear();
                self.worker = None;
                self.in_flight = 0;
                return Err(err);
            }
        }
        Ok(())
    }
}

/// Starts the checking thread; `None` when no thread can be started.
fn start(mut prepare: Prepare) -> Option<Worker> {
    let (to, batches) = mpsc::channel::<Vec<Entry>>();
    let (done, from) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("plan".into())
        .spawn(move || {
            for batch in batches {
                let mut text = String::with_capacity(batch.len() * 160);
                let found = batch
                    .iter()
                    .map(|e| prepare.entry(e, true, &mut text))
                    .collect();
                let checked = Checked {
                    entries: batch,
                    found,
                    text,
                };
                if done.send(checked).is_err() {
                    break;
                }
            }
        })
        .ok()?;
    Some(Worker { to, from, thread })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Origin;
    use crate::plan::PlanOptions;

    fn entry(uri: &str, line: usize) -> Entry {
        Entry::from_uri(
            uri.to_string(),
            Origin {
                file: "uris.txt".into(),
                line,
            },
        )
    }

    /// Plans `uris` on one thread, then through [`Ahead`]: both give the
    /// jobs (URI, URL, path) in order, and the refusal, if any.
    fn both(uris: &[String], opts: &PlanOptions) -> [(Vec<[String; 3]>, Option<String>); 2] {
        let row = |p: Planned| [p.uri, p.url, p.rel];
        let mut alone = Planner::new(opts.clone());
        let mut one = Vec::new();
        let mut one_err = None;
        for (i, u) in uris.iter().enumerate() {
            match alone.push_planned(entry(u, i + 1)) {
                Ok(Some(p)) => one.push(row(p)),
                Ok(None) => {}
                Err(e) => {
                    one_err = Some(e.to_string());
                    break;
                }
            }
        }
        let mut two = Vec::new();
        let mut f = |p: Planned| two.push(row(p));
        let mut ahead = Ahead::new(Planner::new(opts.clone()), &mut f);
        let pushed = uris
            .iter()
            .enumerate()
            .try_for_each(|(i, u)| ahead.push(entry(u, i + 1)));
        let settled = ahead.settle();
        let two_err = pushed.and(settled).err().map(|e| e.to_string());
        drop(ahead);
        [(one, one_err), (two, two_err)]
    }

    fn uri(i: usize) -> String {
        format!("mast:SCALE/product/o{:05}_{i:07}.fits", i / 100)
    }

    #[test]
    fn two_threads_plan_what_one_does_across_batches() {
        // Duplicates across batches, a filter dropping some, odd names.
        let mut uris: Vec<String> = (0..5 * BATCH).map(uri).collect();
        for i in (0..uris.len()).step_by(700) {
            uris[i] = uri(i / 3);
        }
        for i in (5..uris.len()).step_by(333) {
            uris[i] = format!("mast:SCALE/product/o{i}_x.txt");
        }
        uris[4000] = "mast:SCALE/product/a b_ü.fits".into();
        let mut opts = PlanOptions::new(url::Url::parse("http://127.0.0.1:1/").unwrap());
        opts.extensions = vec!["fits".into()];
        let [one, two] = both(&uris, &opts);
        assert!(one.1.is_none(), "{:?}", one.1);
        assert!(one.0.len() > 4 * BATCH && one.0.len() < uris.len());
        assert_eq!(one, two);
    }

    #[test]
    fn a_refusal_far_ahead_is_the_same_and_nothing_after_it_is_planned() {
        // Line 3001 lands on line 11's path in another case: refused.
        let mut uris: Vec<String> = (0..4 * BATCH).map(uri).collect();
        uris[3000] = uri(10).replace("o00000", "O00000");
        // A bad URI after it, in a batch already checked.
        uris[3500] = "mast:SCALE/../x.fits".into();
        let opts = PlanOptions::new(url::Url::parse("http://127.0.0.1:1/").unwrap());
        let [one, two] = both(&uris, &opts);
        let err = one.1.clone().unwrap_or_default();
        assert!(err.starts_with("uris.txt:3001: "), "{err}");
        assert!(err.contains("the entry on line 11"), "{err}");
        assert_eq!(one.0.len(), 3000);
        assert_eq!(one, two);
    }
}
