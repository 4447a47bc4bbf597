//! Group commit: many callers' statements of one kind, run as one statement.
//!
//! Every message a service handles costs a round trip and, for a write, a commit (a WAL
//! flush). Under load that, not the work itself, is what PostgreSQL spends its time on.
//! A [`Batcher`] lets each handler keep its one-message-at-a-time shape while the rows
//! of all handlers waiting at the same moment go to the database together: the first
//! caller's row goes at once, and whoever arrives while a statement runs joins the next
//! one. Under a steady stream that alone makes batches of one or two; so when items
//! have been coming at least one per `linger` (2 ms by default), a batch also waits that
//! long for company. A quiet system never waits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Rows one statement takes at most: enough that a busy service commits rarely, few
/// enough that a batch of large events stays a modest statement.
pub const MAX_ROWS: usize = 128;

/// Statements of one kind running at once, each on its own pool connection.
pub const MAX_RUNNING: usize = 1;

/// Why a batcher could not answer a call itself (the batch's own errors are the caller's
/// error type, `E`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batcher's task is gone (the runtime is shutting down, or a batch panicked).
    #[error("batched work: {0}")]
    Stopped(&'static str),
    /// The batch's function answered a batch with another number of results.
    #[error("a batch of {expected} answered {got} results")]
    ShortAnswer {
        /// Items in the batch.
        expected: usize,
        /// Results given.
        got: usize,
    },
}

type Reply<O, E> = oneshot::Sender<Result<O, E>>;

/// When the previous batch started and how many items it took: the arrival rate a
/// batcher decides to linger on.
#[derive(Debug, Clone, Copy)]
struct LastBatch {
    started: tokio::time::Instant,
    size: usize,
}

impl LastBatch {
    /// Items to expect within `window`, at the rate they came since this batch began
    /// to gather.
    fn expected_within(self, window: Duration) -> f64 {
        let cycle = self.started.elapsed().as_secs_f64().max(1e-6);
        self.size as f64 * window.as_secs_f64() / cycle
    }
}

/// How a batcher makes its batches.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Items one batch takes at most.
    pub max_batch: usize,
    /// Batches running at once (each holds a pool connection, or a publish in flight).
    pub max_running: usize,
    /// How long a batch waits for company when items are coming fast (see [`Batcher::new`]).
    pub linger: Duration,
}

impl Limits {
    /// One batched statement at a time, of up to [`MAX_ROWS`] rows, lingering `linger`.
    pub fn statement(linger: Duration) -> Self {
        Self { max_batch: MAX_ROWS, max_running: MAX_RUNNING, linger }
    }
}

/// Runs submitted items in batches through one function, whose errors are `E`.
///
/// Cheap to clone; clones share the batches. The background task ends when the last
/// clone is dropped.
pub struct Batcher<I, O, E> {
    queue: mpsc::UnboundedSender<(I, Reply<O, E>)>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<I, O, E> Batcher<I, O, E>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
    E: From<BatchError> + Send + 'static,
{
    /// A batcher passing up to `limits.max_batch` items at a time to `run`, with at most
    /// `limits.max_running` batches running at once.
    ///
    /// When items came at least one per `limits.linger` over the last batch's cycle, a
    /// batch waits that long for more before it runs: a steady stream then makes fewer,
    /// larger statements, while an item arriving at a quiet moment goes at once. A zero
    /// linger never waits.
    ///
    /// `run` must answer every item, in order: a result of another length is an error.
    /// When a batch of several fails, each of its items is run again on its own, so one
    /// item the database refuses fails alone instead of taking its batch-mates with it.
    ///
    /// Must be called inside a tokio runtime.
    pub fn new<F, Fut>(limits: Limits, run: F) -> Self
    where
        F: Fn(Arc<Vec<I>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<(I, Reply<O, E>)>();
        let run = Arc::new(run);
        let running = Arc::new(Semaphore::new(limits.max_running.max(1)));
        let (max_batch, linger) = (limits.max_batch.max(1), limits.linger);
        tokio::spawn(async move {
            let mut last: Option<LastBatch> = None;
            while let Some(first) = waiting.recv().await {
                // Wait for a free slot first: items arriving meanwhile join this batch.
                let Ok(permit) = running.clone().acquire_owned().await else { return };
                let mut batch = vec![first];
                let full = waiting.len() + 1 >= max_batch;
                if !full && !linger.is_zero() && last.is_some_and(|last| last.expected_within(linger) >= 1.0) {
                    tokio::time::sleep(linger).await;
                }
                let started = tokio::time::Instant::now();
                while batch.len() < max_batch {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                last = Some(LastBatch { started, size: batch.len() });
                let run = run.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = batch.into_iter().unzip();
                    run_batch(&*run, items, replies).await;
                });
            }
        });
        Self { queue }
    }

    /// Runs `item` with whatever else is waiting, and returns its own result.
    pub async fn submit(&self, item: I) -> Result<O, E> {
        self.enqueue(item).await
    }

    /// Queues `item` now and returns its result to wait for: items queued one after
    /// another without waiting in between share a batch (up to the batcher's limit).
    pub fn enqueue(&self, item: I) -> impl Future<Output = Result<O, E>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue.send((item, reply)).map_err(|_| BatchError::Stopped("the batcher has stopped"));
        async move {
            queued?;
            // A dropped reply means the batch's task panicked or the runtime is shutting down.
            answer.await.map_err(|_| BatchError::Stopped("a batch ended without an answer"))?
        }
    }

    /// Runs `items` with whatever else is waiting, and returns their results in order.
    /// Every item is queued before any is waited for, so they share a batch (up to the
    /// batcher's limit) rather than the first going alone.
    pub async fn submit_all(&self, items: impl IntoIterator<Item = I>) -> Vec<Result<O, E>> {
        let answers: Vec<_> = items.into_iter().map(|item| self.enqueue(item)).collect();
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await);
        }
        results
    }
}

/// Runs one batch and answers each of its callers; when a batch of several fails, runs
/// each item on its own so that only the failing one gets an error.
async fn run_batch<I, O, E, F, Fut>(run: &F, items: Vec<I>, replies: Vec<Reply<O, E>>)
where
    E: From<BatchError>,
    F: Fn(Arc<Vec<I>>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, E>>,
{
    let items = Arc::new(items);
    let error = match answer(run, items.clone()).await {
        Ok(outputs) => {
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(output));
            }
            return;
        }
        Err(error) => error,
    };
    let mut replies = replies.into_iter();
    match Arc::try_unwrap(items) {
        Ok(items) if items.len() > 1 => {
            tracing::debug!(size = items.len(), "a batch failed; running its items one by one");
            for (item, reply) in items.into_iter().zip(replies) {
                let _ = reply.send(answer(run, Arc::new(vec![item])).await.map(|mut one| one.remove(0)));
            }
        }
        Ok(_) => {
            if let Some(reply) = replies.next() {
                let _ = reply.send(Err(error));
            }
        }
        // The function kept the items past its answer: they cannot be run again alone.
        Err(_) => {
            for reply in replies {
                let _ = reply.send(Err(BatchError::Stopped("a failed batch's items were kept by its function").into()));
            }
        }
    }
}

/// Runs one batch and checks that every item got its answer.
async fn answer<I, O, E, F, Fut>(run: &F, items: Arc<Vec<I>>) -> Result<Vec<O>, E>
where
    E: From<BatchError>,
    F: Fn(Arc<Vec<I>>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, E>>,
{
    let expected = items.len();
    let outputs = run(items).await?;
    if outputs.len() == expected {
        Ok(outputs)
    } else {
        Err(BatchError::ShortAnswer { expected, got: outputs.len() }.into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The tests' batch function error.
    #[derive(Debug, PartialEq, thiserror::Error)]
    enum TestError {
        #[error("refused: {0}")]
        Refused(&'static str),
        #[error(transparent)]
        Batch(#[from] BatchError),
    }

    type TestBatcher = Batcher<u32, u32, TestError>;

    fn limits(max_batch: usize, max_running: usize, linger: Duration) -> Limits {
        Limits { max_batch, max_running, linger }
    }

    #[tokio::test]
    async fn callers_waiting_together_share_a_batch_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher: TestBatcher = Batcher::new(limits(100, 1, Duration::ZERO), move |items: Arc<Vec<u32>>| {
            seen.lock().unwrap().push(items.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(items.iter().map(|i| i * 2).collect())
            }
        });
        let answers = submit_all(&batcher, 0..50).await;
        assert_eq!(answers, (0..50).map(|i| Ok(i * 2)).collect::<Vec<_>>());
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 50);
        assert!(sizes.len() < 50, "50 callers waiting together ran one by one: {sizes:?}");
    }

    /// A batcher whose statement takes no time and answers each item with itself,
    /// recording the size of every batch.
    fn recording(max_batch: usize, max_running: usize, linger: Duration) -> (TestBatcher, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::new(limits(max_batch, max_running, linger), move |items: Arc<Vec<u32>>| {
            seen.lock().unwrap().push(items.len());
            async move { Ok(items.to_vec()) }
        });
        (batcher, sizes)
    }

    /// A batcher with a 2 ms linger.
    fn lingering() -> (TestBatcher, Arc<Mutex<Vec<usize>>>) {
        recording(100, 1, Duration::from_millis(2))
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_lingers_into_larger_batches() {
        let (batcher, sizes) = lingering();
        // One item per millisecond: without lingering each would run alone.
        let mut callers = Vec::new();
        for i in 0..40 {
            let batcher = batcher.clone();
            callers.push(tokio::spawn(async move { batcher.submit(i).await }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (i, caller) in callers.into_iter().enumerate() {
            assert_eq!(caller.await.unwrap().unwrap(), i as u32);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        // Each batch waits 2 ms, so takes about two items.
        assert!(sizes.len() <= 25, "40 items a millisecond apart made {} batches: {sizes:?}", sizes.len());
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_at_a_quiet_moment_does_not_wait() {
        let (batcher, sizes) = lingering();
        // The first item ever, then one after a quiet second: neither waits (time is
        // virtual here, so the clock moves only when something waits).
        for i in 0..2 {
            let asked = tokio::time::Instant::now();
            assert_eq!(batcher.submit(i).await.unwrap(), i);
            assert_eq!(asked.elapsed(), Duration::ZERO, "item {i} waited");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(*sizes.lock().unwrap(), [1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn items_submitted_together_share_one_batch_and_answer_in_order() {
        let (batcher, sizes) = recording(100, 1, Duration::ZERO);
        let answers: Vec<u32> = batcher.submit_all(0..30).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, (0..30).collect::<Vec<_>>());
        assert_eq!(*sizes.lock().unwrap(), [30]);
    }

    #[tokio::test]
    async fn batches_never_exceed_the_limit() {
        let (batcher, sizes) = recording(7, 2, Duration::ZERO);
        let answers = submit_all(&batcher, 0..40).await;
        assert_eq!(answers, (0..40).map(Ok).collect::<Vec<_>>());
        assert!(sizes.lock().unwrap().iter().all(|&size| size <= 7));
    }

    #[tokio::test]
    async fn an_item_the_database_refuses_fails_alone() {
        // Refuses any batch holding 13, as a statement fails as a whole on one bad row.
        let batcher: TestBatcher = Batcher::new(limits(100, 1, Duration::ZERO), |items: Arc<Vec<u32>>| async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if items.contains(&13) { Err(TestError::Refused("13")) } else { Ok(items.to_vec()) }
        });
        let answers = submit_all(&batcher, 0..30).await;
        for (item, answer) in (0..30).zip(answers) {
            match answer {
                Ok(value) => assert_eq!(value, item),
                Err(error) => assert!(item == 13 && error.contains("refused: 13"), "{item}: {error}"),
            }
        }
    }

    #[tokio::test]
    async fn a_short_answer_is_an_error() {
        let short: TestBatcher = Batcher::new(limits(10, 1, Duration::ZERO), |_| async { Ok(Vec::new()) });
        let error = short.submit(1).await.unwrap_err();
        assert_eq!(error, TestError::Batch(BatchError::ShortAnswer { expected: 1, got: 0 }));
    }

    async fn submit_all(batcher: &TestBatcher, items: std::ops::Range<u32>) -> Vec<Result<u32, String>> {
        let mut tasks = tokio::task::JoinSet::new();
        for item in items {
            let batcher = batcher.clone();
            tasks.spawn(async move { (item, batcher.submit(item).await.map_err(|e| e.to_string())) });
        }
        let mut answers = tasks.join_all().await;
        answers.sort_by_key(|(item, _)| *item);
        answers.into_iter().map(|(_, answer)| answer).collect()
    }
}
