//! At most N connections to a host, counted where they are opened.
//!
//! reqwest's pool opens a connection whenever a request finds none idle,
//! including when one is about to come back: hyper hands a finished
//! HTTP/1.1 connection back to the pool from another task, and a request
//! started in that moment races a new connection against the returning one
//! (and the loser is kept too). So `-j N` alone can mean N + 1 connections.
//!
//! A [`Gate`] sits in the connector of each host's clients: a connection is
//! opened only while fewer than the cap are open. At the cap, the connect
//! waits: for a returning connection to serve the request instead, or for
//! one in progress to open (it is pooled, and may serve the request). Only
//! when [`WAIT`] passes with no connect in progress and none opened does
//! it fail with [`Saturated`]. That failure is harmless when the request
//! already got a returning connection (the pool had started the connect in
//! the background and drops it). When it reaches the request,
//! `super::http` decides whether a counted connection closed unseen (a
//! server closes idle ones): then it corrects the count ([`Gate::lost`])
//! and sends the request again.
//!
//! The count goes down when a connect fails or is dropped, and when a
//! connection closes openly: an answer that says its connection closes
//! (`Connection: close`, HTTP/1.0 without keep-alive) takes it off the
//! count as soon as the answer is done (`super::http`), so a server that
//! closes every connection costs no wait. On a host that answered over
//! HTTP/2 ([`Gate::multiplexed`]) a live connection serves every request,
//! so a connect at the cap with none in progress means one was closed (a
//! GOAWAY, as nginx sends after `keepalive_requests`): it takes that one's
//! place at once. Only an HTTP/1.1 connection closed unseen (a server
//! closing an idle one) costs one [`WAIT`] when the next one is needed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

/// The longest a connect waits at the cap for a connection to come back.
pub(crate) const WAIT: Duration = Duration::from_millis(200);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connect refused at the cap.
#[derive(Debug, thiserror::Error)]
#[error("{cap} connections already open to this host")]
pub(crate) struct Saturated {
    pub(crate) cap: usize,
}

/// The connections open to one host (see the module docs).
#[derive(Debug)]
pub(crate) struct Gate {
    cap: usize,
    wait: Duration,
    count: Mutex<Count>,
    freed: Notify,
    /// The host answered over HTTP/2.
    multiplexed: std::sync::atomic::AtomicBool,
}

/// What a [`Gate`] counts.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    /// Connections open or opening.
    open: usize,
    /// Of those, still opening.
    connecting: usize,
    /// Connections opened so far.
    opened: u64,
}

impl Gate {
    /// Returns a gate of `cap` connections (at least one) whose connects
    /// wait at most `wait` at the cap with nothing moving.
    pub(crate) fn new(cap: usize, wait: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            cap: cap.max(1),
            wait,
            count: Mutex::new(Count::default()),
            freed: Notify::new(),
            multiplexed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn count(&self) -> std::sync::MutexGuard<'_, Count> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the cap.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Marks the host as one that answers over HTTP/2: one live connection
    /// serves every request of a client, so a connect at the cap with none
    /// in progress replaces a closed one (see the module docs).
    pub(crate) fn multiplexed(&self) {
        self.multiplexed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns the connections counted as open (or opening).
    pub(crate) fn open(&self) -> usize {
        self.count().open
    }

    /// Counts a connection about to open, waiting for room while anything
    /// moves (see the module docs).
    async fn enter(&self) -> Result<(), Saturated> {
        let mut deadline = tokio::time::Instant::now() + self.wait;
        let mut last = None;
        loop {
            let freed = self.freed.notified();
            {
                let mut c = self.count();
                if c.open < self.cap {
                    c.open += 1;
                    c.connecting += 1;
                    return Ok(());
                }
                if c.connecting == 0 && self.multiplexed.load(std::sync::atomic::Ordering::Relaxed)
                {
                    // Over HTTP/2 a live connection would have served this
                    // request: one is gone, and this one takes its place.
                    c.connecting += 1;
                    return Ok(());
                }
                last.get_or_insert(c.opened);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                let c = *self.count();
                if c.connecting == 0 && last == Some(c.opened) {
                    return Err(Saturated { cap: self.cap });
                }
                // A connect is in progress or one opened: wait on.
                last = Some(c.opened);
                deadline = tokio::time::Instant::now() + self.wait;
            }
        }
    }

    /// A connect counted by [`Gate::enter`] ended: opened, or not (failed
    /// or dropped).
    fn entered(&self, opened: bool) {
        {
            let mut c = self.count();
            c.connecting = c.connecting.saturating_sub(1);
            if opened {
                c.opened += 1;
            } else {
                c.open = c.open.saturating_sub(1);
            }
        }
        if !opened {
            self.freed.notify_one();
        }
    }

    /// A counted connection is gone: a request met [`Saturated`] and none
    /// came back, so one closed unseen.
    pub(crate) fn lost(&self) {
        {
            let mut c = self.count();
            c.open = c.open.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

/// Ends a counted connect when dropped: not opened unless marked.
struct Entered {
    gate: Arc<Gate>,
    opened: bool,
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.gate.entered(self.opened);
    }
}

/// Returns true if and only if `e` (or an error below it) is [`Saturated`].
pub(crate) fn is_saturated(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(err) = at {
        if err.downcast_ref::<Saturated>().is_some() {
            return true;
        }
        at = err.source();
    }
    false
}

/// Puts a [`Gate`] in front of a connector (reqwest's `connector_layer`).
#[derive(Debug, Clone)]
pub(crate) struct GateLayer(pub Arc<Gate>);

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gated<S>;
    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// A connector behind a [`Gate`].
#[derive(Debug, Clone)]
pub(crate) struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S, R> tower_service::Service<R> for Gated<S>
where
    S: tower_service::Service<R, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        // The clone made ready serves this call; a fresh clone stays.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.enter().await?;
            // Dropped with the future too (a timeout, a cancelled request).
            let mut entered = Entered {
                gate: gate.clone(),
                opened: false,
            };
            let conn = inner.call(req).await;
            entered.opened = conn.is_ok();
            conn
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connects_wait_at_the_cap_and_fail_after_the_wait() {
        let gate = Gate::new(2, WAIT);
        for _ in 0..2 {
            gate.enter().await.unwrap();
            gate.entered(true);
        }
        assert_eq!(gate.open(), 2);
        // At the cap: a connection lost within the wait lets it through.
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter().await });
        tokio::time::sleep(WAIT / 2).await;
        gate.lost();
        waiting.await.unwrap().unwrap();
        assert_eq!(gate.open(), 2);
        // It is still connecting: others wait on past the wait, and get
        // room when it fails.
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.enter().await });
        tokio::time::sleep(WAIT * 3).await;
        assert!(!waiting.is_finished());
        gate.entered(false);
        waiting.await.unwrap().unwrap();
        gate.entered(true);
        // Nothing moving: refused after the wait, the count unchanged.
        let e = gate.enter().await.unwrap_err();
        assert_eq!(e.cap, 2);
        assert_eq!(gate.open(), 2);
        // Over HTTP/2, a connect at the cap with none in progress replaces
        // a connection that closed (GOAWAY): no wait, the count unchanged.
        gate.multiplexed();
        let before = tokio::time::Instant::now();
        gate.enter().await.unwrap();
        assert_eq!(tokio::time::Instant::now(), before, "it waited");
        gate.entered(true);
        assert_eq!(gate.open(), 2);
        // Found below the errors that wrap it (as hyper's and reqwest's do).
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrap(#[source] BoxError);
        let wrapped = Wrap(Box::new(Wrap(Box::new(e))));
        assert!(is_saturated(&wrapped));
        assert!(!is_saturated(&Wrap("x".into())));
    }

    #[tokio::test]
    async fn a_failed_connect_is_not_counted() {
        use tower_service::Service;
        #[derive(Clone)]
        struct Refuse;
        impl Service<()> for Refuse {
            type Response = ();
            type Error = BoxError;
            type Future = std::future::Ready<Result<(), BoxError>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ()) -> Self::Future {
                std::future::ready(Err("refused".into()))
            }
        }
        let gate = Gate::new(1, WAIT);
        let mut svc = tower_layer::Layer::layer(&GateLayer(gate.clone()), Refuse);
        assert!(svc.call(()).await.is_err());
        assert!(svc.call(()).await.is_err());
        assert_eq!(gate.open(), 0);
        // Nor one dropped while it waits to open.
        #[derive(Clone)]
        struct Never;
        impl Service<()> for Never {
            type Response = ();
            type Error = BoxError;
            type Future = std::future::Pending<Result<(), BoxError>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: ()) -> Self::Future {
                std::future::pending()
            }
        }
        let mut svc = tower_layer::Layer::layer(&GateLayer(gate.clone()), Never);
        let connect = svc.call(());
        let cut = tokio::time::timeout(Duration::from_millis(10), connect).await;
        assert!(cut.is_err());
        assert_eq!(gate.open(), 0);
    }
}
