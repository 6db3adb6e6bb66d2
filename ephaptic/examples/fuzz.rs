//! The long fuzz run, on stable Rust: mutates the harness's seed frames with a fixed-seed PRNG
//! and feeds them to the entry points of `ephaptic::__fuzz` (the same checks the property
//! tests and the cargo-fuzz targets run) until the time is up.
//!
//! ```text
//! cargo run --release -p ephaptic --example fuzz -- --seconds 300
//! cargo run --release -p ephaptic --example fuzz -- --replay target/fuzz-crashes/crash-....bin
//! ```
//! Options: `--seconds N` (default 60), `--seed N` (default 1), `--target frame|bind|inbound|all`
//! (default all), `--out DIR` (default `target/fuzz-crashes`), `--write-seeds DIR` (write the
//! seed frames there, as a starting corpus for cargo-fuzz, and stop). A failed check writes the input
//! to `DIR/crash-<target>-<hash>.bin`, prints it, and exits with status 1. A stack overflow
//! aborts the process instead of panicking: rerun with the same `--seed` (the run is
//! deterministic) and `--save-every 1` to keep the last input in `DIR/last.bin`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ephaptic::__fuzz::{self, Inbound, mutate::Rng, mutate::mutate};

struct Options {
    seconds: u64,
    seed: u64,
    target: String,
    out: PathBuf,
    replay: Option<PathBuf>,
    save_every: u64,
    write_seeds: Option<PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 60,
        seed: 1,
        target: "all".into(),
        out: PathBuf::from("target/fuzz-crashes"),
        replay: None,
        save_every: 0,
        write_seeds: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--seconds" => o.seconds = value().parse().unwrap_or_else(|_| usage("--seconds N")),
            "--seed" => o.seed = value().parse().unwrap_or_else(|_| usage("--seed N")),
            "--target" => o.target = value(),
            "--out" => o.out = value().into(),
            "--replay" => o.replay = Some(value().into()),
            "--write-seeds" => o.write_seeds = Some(value().into()),
            "--save-every" => {
                o.save_every = value().parse().unwrap_or_else(|_| usage("--save-every N"))
            }
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if !["frame", "bind", "inbound", "all"].contains(&o.target.as_str()) {
        usage("--target is frame, bind, inbound or all");
    }
    o
}

fn usage(why: &str) -> ! {
    eprintln!(
        "{why}\nusage: fuzz [--seconds N] [--seed N] [--target frame|bind|inbound|all] [--out DIR] [--replay FILE] [--save-every N] [--write-seeds DIR]"
    );
    std::process::exit(2)
}

/// A check, by name.
type Check<'a> = (&'static str, &'a mut dyn FnMut(&[u8]));

/// Runs the chosen checks on one input; `Err` names the check that failed and why.
fn run(target: &str, inbound: &mut Inbound, data: &[u8]) -> Result<(), (&'static str, String)> {
    let checks: [Check<'_>; 3] = [
        ("frame", &mut |d| __fuzz::frame(d)),
        ("bind", &mut |d| __fuzz::bind(d)),
        ("inbound", &mut |d| inbound.frame(d)),
    ];
    for (name, check) in checks {
        if target != "all" && target != name {
            continue;
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(data))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            return Err((name, why));
        }
    }
    Ok(())
}

/// FNV-1a, to name crash files by their content.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    let o = options();
    // Panics are findings, reported once below with the input; not printed as they happen.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(dir) = &o.write_seeds {
        std::fs::create_dir_all(dir).expect("the seed folder");
        for seed in __fuzz::seeds() {
            let path = dir.join(format!("seed-{:016x}", hash(&seed)));
            std::fs::write(path, seed).expect("writing a seed");
        }
        println!("seeds written to {}", dir.display());
        return;
    }
    let mut inbound = Inbound::new();

    if let Some(path) = &o.replay {
        let data =
            std::fs::read(path).unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
        match run(&o.target, &mut inbound, &data) {
            Ok(()) => println!("{}: every check holds", path.display()),
            Err((check, why)) => {
                println!("{}: {check} fails: {why}", path.display());
                std::process::exit(1);
            }
        }
        return;
    }

    std::fs::create_dir_all(&o.out).expect("the output folder");
    let mut corpus = __fuzz::seeds();
    let seeds = corpus.len();
    let mut rng = Rng::new(o.seed);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let mut report = start + Duration::from_secs(10);
    let mut execs: u64 = 0;
    println!(
        "fuzzing {} for {} s, seed {}, {} seed frames",
        o.target, o.seconds, o.seed, seeds
    );
    loop {
        // Check the clock every 64 inputs: reading it is not free at this rate.
        if execs.is_multiple_of(64) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now >= report {
                report = now + Duration::from_secs(10);
                let secs = now.duration_since(start).as_secs_f64();
                println!(
                    "{:>6.0} s  {execs} inputs  {:.0}/s  corpus {}",
                    secs,
                    execs as f64 / secs,
                    corpus.len()
                );
            }
        }
        let parent = &corpus[rng.below(corpus.len())];
        let data = mutate(&mut rng, parent, &corpus);
        execs += 1;
        if o.save_every > 0 && execs.is_multiple_of(o.save_every) {
            let _ = std::fs::write(o.out.join("last.bin"), &data);
        }
        if let Err((check, why)) = run(&o.target, &mut inbound, &data) {
            let path = o
                .out
                .join(format!("crash-{check}-{:016x}.bin", hash(&data)));
            std::fs::write(&path, &data).expect("writing the crash");
            println!(
                "\n{check} fails after {execs} inputs (seed {}): {why}",
                o.seed
            );
            println!(
                "input ({} bytes): {:02x?}",
                data.len(),
                &data[..data.len().min(256)]
            );
            println!("written to {}", path.display());
            std::process::exit(1);
        }
        // Without coverage to steer by, keep what still reads as a frame (so mutations go
        // deeper than one edit from a seed), replacing at random once the corpus is full.
        if data.len() < 64 * 1024 && __fuzz::is_frame(&data) {
            if corpus.len() < 4096 {
                corpus.push(data);
            } else {
                let i = seeds + rng.below(corpus.len() - seeds);
                corpus[i] = data;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "done: {execs} inputs in {secs:.0} s ({:.0}/s), no check failed; corpus {}",
        execs as f64 / secs,
        corpus.len()
    );
}
