//! Spend budgets: what a key, or all of a profile's callers together, may spend per UTC
//! day and month, at the configured model prices. Before a paid call the request reserves
//! an estimate against every budget it falls under, all or nothing; when it is done the
//! reservation is corrected to what it really cost. A step that would overrun a budget is
//! skipped (`budget`), so local and free steps still answer.
//!
//! In memory the spend is this process's; with `[state] backend = "redis"` it is the
//! fleet's, kept by two scripts (`lua/budget_*.lua`) in micro-USD, so the arithmetic is
//! exact and atomic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::period::Period;
use super::redis::RedisStore;
use crate::config::{BudgetConfig, OnStateError};
use crate::metrics::Metrics;
use crate::policy::Why;

/// One budget in its current period, as a request holds it.
#[derive(Debug, Clone)]
pub struct Limit {
    /// `key` or `profile`.
    pub scope: &'static str,
    /// The key's or profile's name (metrics, messages).
    pub name: String,
    pub period: Period,
    pub micro_usd: i64,
    /// Where its spend is kept: `budget:v1:{scope}:{id}:{period id}`.
    pub store_key: String,
    /// When the period ends (unix seconds).
    pub ends: u64,
}

impl Limit {
    /// The budgets of `budget` for `scope` `name` (`id`: what tells it apart in the
    /// store: a key's digest, a profile's name) in the periods containing `now`.
    pub fn of(scope: &'static str, name: &str, id: &str, budget: BudgetConfig, now: u64) -> Vec<Limit> {
        [(Period::Daily, budget.daily_usd), (Period::Monthly, budget.monthly_usd)]
            .into_iter()
            .filter_map(|(period, usd)| {
                let (period_id, ends) = period.at(now);
                Some(Limit {
                    scope,
                    name: name.to_string(),
                    period,
                    micro_usd: micro_usd(usd?),
                    store_key: format!("budget:v1:{scope}:{id}:{period_id}"),
                    ends,
                })
            })
            .collect()
    }

    fn over(&self) -> Why {
        Why::OverBudget {
            scope: self.scope,
            name: self.name.clone(),
            period: self.period.as_str(),
            budget_micro_usd: self.micro_usd,
            resets_at: self.ends,
        }
    }
}

pub fn micro_usd(usd: f64) -> i64 {
    (usd * 1e6).round().clamp(0.0, i64::MAX as f64) as i64
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Every budget's spend: this process's, or Redis's.
pub struct Budgets {
    /// Spend by store key, with when its period ends.
    local: Mutex<HashMap<String, (i64, u64)>>,
    shared: Option<Arc<RedisStore>>,
    metrics: Metrics,
}

impl Budgets {
    pub fn new(shared: Option<Arc<RedisStore>>, metrics: Metrics) -> Self {
        Budgets { local: Mutex::new(HashMap::new()), shared, metrics }
    }

    /// Reserves `estimate` against every one of `limits`, or says which it would overrun.
    pub async fn reserve(&self, limits: &[Limit], estimate: i64) -> Result<(), Why> {
        if let Some(store) = &self.shared {
            match store.budget_reserve(limits, estimate).await {
                Ok(Ok(spent)) => {
                    self.observe(limits, &spent);
                    return Ok(());
                }
                Ok(Err(over)) => return Err(limits[over].over()),
                Err(_) => {
                    self.metrics.state_fallback(store.on_error().as_str());
                    if store.on_error() == OnStateError::Deny {
                        return Err(Why::BudgetUnknown);
                    }
                }
            }
        }
        let spent = {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            let now = now_unix();
            local.retain(|_, (_, ends)| now < *ends);
            let spent_on = |l: &Limit| local.get(&l.store_key).map_or(0, |(spent, _)| *spent);
            if let Some(over) = limits.iter().find(|l| spent_on(l) + estimate > l.micro_usd) {
                return Err(over.over());
            }
            limits
                .iter()
                .map(|l| {
                    let (spent, _) = local.entry(l.store_key.clone()).or_insert((0, l.ends));
                    *spent += estimate;
                    *spent
                })
                .collect::<Vec<_>>()
        };
        self.observe(limits, &spent);
        Ok(())
    }

    /// Corrects the reservations on `limits` by `delta` (what the request cost minus what
    /// it reserved). With Redis in the background.
    pub fn settle(self: &Arc<Self>, limits: Vec<Limit>, delta: i64) {
        if delta == 0 || limits.is_empty() {
            return;
        }
        let (Some(store), Ok(runtime)) = (&self.shared, tokio::runtime::Handle::try_current()) else {
            self.settle_locally(&limits, delta);
            return;
        };
        let (store, budgets) = (store.clone(), self.clone());
        runtime.spawn(async move {
            match store.budget_settle(&limits, delta).await {
                Ok(spent) => budgets.observe(&limits, &spent),
                Err(_) if store.on_error() == OnStateError::Local => budgets.settle_locally(&limits, delta),
                Err(_) => {}
            }
        });
    }

    fn settle_locally(&self, limits: &[Limit], delta: i64) {
        let spent: Vec<i64> = {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            limits
                .iter()
                .map(|l| {
                    let (spent, _) = local.entry(l.store_key.clone()).or_insert((0, l.ends));
                    *spent = (*spent + delta).max(0);
                    *spent
                })
                .collect()
        };
        self.observe(limits, &spent);
    }

    fn observe(&self, limits: &[Limit], spent: &[i64]) {
        for (limit, spent) in limits.iter().zip(spent) {
            let left = (limit.micro_usd - spent).max(0) as f64 / 1e6;
            self.metrics.budget_left(limit.scope, &limit.name, limit.period.as_str(), left);
        }
    }
}

/// A request's budgets and what it reserved and spent against them. Dropped with the
/// request (a stream's when its body ends): then the reservation is settled.
pub struct Hold {
    budgets: Arc<Budgets>,
    limits: Vec<Limit>,
    state: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    reserved: i64,
    /// Reservations of calls whose cost is not reported yet, by model: counted at their
    /// estimate if it never is.
    pending: Vec<(String, i64)>,
    spent: i64,
}

impl Hold {
    /// `None` when the request falls under no budget.
    pub fn new(budgets: Arc<Budgets>, limits: Vec<Limit>) -> Option<Arc<Hold>> {
        (!limits.is_empty()).then(|| Arc::new(Hold { budgets, limits, state: Mutex::default() }))
    }

    /// Reserves `estimate` for a call to `model`, or says which budget it would overrun.
    pub async fn reserve(&self, model: &str, estimate: i64) -> Result<(), Why> {
        self.budgets.reserve(&self.limits, estimate).await?;
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        held.reserved += estimate;
        held.pending.push((model.to_string(), estimate));
        Ok(())
    }

    /// A call to `model` cost `micro_usd` (0 when it failed before an answer).
    pub fn spent(&self, model: &str, micro_usd: i64) {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = held.pending.iter().position(|(m, _)| m == model) {
            held.pending.remove(at);
            held.spent += micro_usd;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let held = std::mem::take(self.state.get_mut().unwrap_or_else(|e| e.into_inner()));
        let cost = held.spent + held.pending.iter().map(|(_, estimate)| estimate).sum::<i64>();
        if cost > 0 {
            let mut scopes: Vec<(&str, &str)> = self.limits.iter().map(|l| (l.scope, l.name.as_str())).collect();
            scopes.dedup();
            for (scope, name) in scopes {
                self.budgets.metrics.spend(scope, name, cost as f64 / 1e6);
            }
        }
        self.budgets.settle(std::mem::take(&mut self.limits), cost - held.reserved);
    }
}
