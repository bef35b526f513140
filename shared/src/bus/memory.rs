//! An in-process queue with SQS semantics for the local run: a received message is invisible
//! for the queue's visibility timeout, comes back if not deleted, and after `max_receive_count`
//! receives moves to the dead-letter queue. Time is tokio's, so tests can pause it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Bus, BusError, Delivery, MAX_BATCH_ENTRIES, QueueDepth, plan_batches};

/// A queue's settings, as SQS's attributes and `RedrivePolicy` would give them.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub visibility_timeout: Duration,
    /// Receives after which the next receive moves the message to `dlq` instead.
    pub max_receive_count: u32,
    pub dlq: Option<String>,
}

impl QueueSpec {
    /// A queue and its dead-letter queue, named `<name>-dlq` as the pipeline's are
    /// ([`super::Queue::dlq`]).
    pub fn with_dlq(
        name: &str,
        visibility_timeout: Duration,
        max_receive_count: u32,
    ) -> [QueueSpec; 2] {
        let dlq = format!("{name}-dlq");
        [
            QueueSpec {
                name: name.to_owned(),
                visibility_timeout,
                max_receive_count,
                dlq: Some(dlq.clone()),
            },
            QueueSpec {
                name: dlq,
                visibility_timeout,
                max_receive_count: u32::MAX,
                dlq: None,
            },
        ]
    }
}

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

#[derive(Debug)]
struct Queue {
    spec: QueueSpec,
    messages: VecDeque<Message>,
}

#[derive(Debug, Default)]
pub struct MemoryBus {
    queues: Mutex<HashMap<String, Queue>>,
}

impl MemoryBus {
    pub fn new(specs: impl IntoIterator<Item = QueueSpec>) -> Self {
        let queues = specs
            .into_iter()
            .map(|spec| {
                (
                    spec.name.clone(),
                    Queue {
                        spec,
                        messages: VecDeque::new(),
                    },
                )
            })
            .collect();
        Self {
            queues: Mutex::new(queues),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
        // A poisoned lock only means another thread panicked mid-operation on plain data;
        // the queue contents are still consistent (every mutation is a single push/remove).
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unknown(queue: &str) -> BusError {
    BusError::UnknownQueue(queue.to_owned())
}

#[async_trait]
impl Bus for MemoryBus {
    async fn send_delayed(
        &self,
        queue: &str,
        bodies: &[String],
        delay: Duration,
    ) -> Result<(), BusError> {
        // Priced as SQS would bill it: one request per batch.
        let batches = plan_batches(bodies)?.len();
        crate::compute::count(
            crate::compute::Service::Sqs,
            u32::try_from(batches).unwrap_or(u32::MAX),
        );
        let mut queues = self.lock();
        let q = queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
        let visible_at = Instant::now() + delay.min(super::MAX_DELAY);
        for body in bodies {
            q.messages.push_back(Message {
                id: uuid::Uuid::new_v4().to_string(),
                body: body.clone(),
                visible_at,
                receive_count: 0,
                receipt: None,
            });
        }
        Ok(())
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        let max = max.clamp(1, MAX_BATCH_ENTRIES);
        let mut queues = self.lock();
        let spec = queues
            .get(queue)
            .ok_or_else(|| unknown(queue))?
            .spec
            .clone();
        let now = Instant::now();
        let mut out = Vec::new();
        let mut to_dlq = Vec::new();
        if let Some(q) = queues.get_mut(queue) {
            let mut i = 0;
            while i < q.messages.len() && out.len() < max {
                let m = &mut q.messages[i];
                if m.visible_at > now {
                    i += 1;
                    continue;
                }
                if spec.dlq.is_some() && m.receive_count >= spec.max_receive_count {
                    if let Some(m) = q.messages.remove(i) {
                        to_dlq.push(m);
                    }
                    continue;
                }
                m.receive_count += 1;
                let receipt = uuid::Uuid::new_v4().to_string();
                m.receipt = Some(receipt.clone());
                m.visible_at = now + spec.visibility_timeout;
                out.push(Delivery {
                    message_id: m.id.clone(),
                    receipt,
                    receive_count: m.receive_count,
                    body: m.body.clone(),
                });
                i += 1;
            }
        }
        if let Some(dlq) = spec.dlq.as_deref() {
            let dq = queues.get_mut(dlq).ok_or_else(|| unknown(dlq))?;
            for mut m in to_dlq {
                m.receive_count = 0;
                m.receipt = None;
                m.visible_at = now;
                dq.messages.push_back(m);
            }
        }
        Ok(out)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), BusError> {
        let mut queues = self.lock();
        let q = queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
        match q
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))
        {
            Some(i) => {
                q.messages.remove(i);
                Ok(())
            }
            // SQS accepts deleting an already-deleted message; so do we (redelivery races).
            None => Ok(()),
        }
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), BusError> {
        let mut queues = self.lock();
        let q = queues.get_mut(queue).ok_or_else(|| unknown(queue))?;
        let m = q
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt))
            .ok_or_else(|| BusError::BadReceipt(receipt.to_owned()))?;
        m.visible_at = Instant::now() + timeout;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, BusError> {
        let queues = self.lock();
        let q = queues.get(queue).ok_or_else(|| unknown(queue))?;
        let now = Instant::now();
        let visible = q.messages.iter().filter(|m| m.visible_at <= now).count() as u64;
        Ok(QueueDepth {
            visible,
            in_flight: q.messages.len() as u64 - visible,
        })
    }
}
