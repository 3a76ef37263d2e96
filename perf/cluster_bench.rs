//! Cluster measurements against running brokers, with the shardlog admin client. Driven by
//! `perf/cluster.sh`, which starts the brokers and stores the results.
//!
//!   cluster_bench controller BOOTSTRAP            prints the active controller's id
//!   cluster_bench wait-controller BOOTSTRAP OLD   waits until BOOTSTRAP names a controller
//!                                                 other than OLD; prints the milliseconds
//!   cluster_bench create BOOTSTRAP ALL TOPICS PARTITIONS
//!                                                 creates TOPICS topics of PARTITIONS each
//!                                                 through BOOTSTRAP, then waits until every
//!                                                 broker of ALL (comma list) reports every
//!                                                 partition with a leader; prints both times
//!   cluster_bench propagate CONTROLLER OTHERS N   N times: creates a one-partition topic at
//!                                                 the controller, then polls each broker of
//!                                                 OTHERS until its metadata has it; prints the
//!                                                 delay percentiles (from the answer to the
//!                                                 topic being visible there)

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardlog::client::admin::Admin;

const IO_MEMORY: usize = 1 << 20;

/// Runs `make`'s future on an executor of its own and returns what it gives.
fn run<T, F>(make: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + 'static,
{
    shardlog::runtime::run_local(IO_MEMORY, make).expect("executor")
}

async fn controller(bootstrap: &str) -> i32 {
    let admin = Admin::connect(bootstrap).await.expect("connect");
    admin.describe_cluster().await.expect("describe").controller
}

/// Whether every broker in `all` lists `topics` with every partition led.
async fn all_led(all: &[String], topics: &[String], partitions: usize) -> bool {
    for bootstrap in all {
        let Ok(admin) = Admin::connect(bootstrap).await else {
            return false;
        };
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let Ok(found) = admin.topics(Some(&names)).await else {
            return false;
        };
        let led = found
            .iter()
            .filter(|t| {
                t.partitions.len() == partitions && t.partitions.iter().all(|p| p.leader >= 0)
            })
            .count();
        if led != topics.len() {
            return false;
        }
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: cluster_bench controller|wait-controller|create|propagate ...";
    let command = args.first().expect(usage).clone();
    let args: Vec<String> = args[1..].to_vec();
    match command.as_str() {
        "controller" => {
            let id = run(move || async move { controller(&args[0]).await });
            println!("{id}");
        }
        "wait-controller" => {
            let ms = run(move || async move {
                let old: i32 = args[1].parse().expect("old controller id");
                let started = Instant::now();
                loop {
                    if let Ok(admin) = Admin::connect(&args[0]).await {
                        if let Ok(cluster) = admin.describe_cluster().await {
                            if cluster.controller >= 0 && cluster.controller != old {
                                return started.elapsed().as_secs_f64() * 1e3;
                            }
                        }
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "no new controller"
                    );
                    shardlog::runtime::sleep(Duration::from_millis(5)).await;
                }
            });
            println!("new controller after {ms:.0} ms");
        }
        "create" => {
            let (created_ms, led_ms) = run(move || async move {
                let all: Vec<String> = args[1].split(',').map(str::to_owned).collect();
                let topics: usize = args[2].parse().expect("topics");
                let partitions: usize = args[3].parse().expect("partitions");
                let admin = Admin::connect(&args[0]).await.expect("connect");
                let names: Vec<String> = (0..topics).map(|i| format!("bench-create-{i}")).collect();
                let started = Instant::now();
                for name in &names {
                    admin
                        .create_topic(name, partitions as i32, 1, &[])
                        .await
                        .expect("create");
                }
                let created = started.elapsed();
                while !all_led(&all, &names, partitions).await {
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "not led in time"
                    );
                    shardlog::runtime::sleep(Duration::from_millis(2)).await;
                }
                (
                    created.as_secs_f64() * 1e3,
                    started.elapsed().as_secs_f64() * 1e3,
                )
            });
            println!("created in {created_ms:.0} ms; every partition led on every broker after {led_ms:.0} ms");
        }
        "propagate" => {
            let report = run(move || async move {
                let others: Vec<String> = args[1].split(',').map(str::to_owned).collect();
                let rounds: usize = args[2].parse().expect("rounds");
                let admin = Admin::connect(&args[0]).await.expect("connect");
                let mut clients = Vec::new();
                for other in &others {
                    clients.push(Admin::connect(other).await.expect("connect"));
                }
                let mut delays = Histogram::<u64>::new(3).expect("histogram");
                for round in 0..rounds {
                    let name = format!("bench-propagate-{round}");
                    admin.create_topic(&name, 1, 1, &[]).await.expect("create");
                    let answered = Instant::now();
                    for client in &clients {
                        loop {
                            let found = client.topics(Some(&[name.as_str()])).await;
                            if found.is_ok_and(|t| t.iter().any(|t| t.name == name)) {
                                break;
                            }
                            assert!(answered.elapsed() < Duration::from_secs(10));
                        }
                        delays
                            .record(answered.elapsed().as_micros() as u64)
                            .expect("record");
                    }
                }
                format!(
                        "metadata propagation (answer at the controller -> visible on a broker), {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        delays.len(),
                        delays.value_at_quantile(0.5) as f64 / 1e3,
                        delays.value_at_quantile(0.99) as f64 / 1e3,
                        delays.max() as f64 / 1e3
                    )
            });
            println!("{report}");
        }
        _ => panic!("{usage}"),
    }
}
