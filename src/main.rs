//! The `stackhound` binary: parse the command line and hand over to the library.

use clap::Parser;

// Parsing dominates the CPU per event; mimalloc makes it 1.3-1.5x faster (performance notes).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its position in `mi_option_e`; the Rust bindings name no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> anyhow::Result<()> {
    // mimalloc gives freed memory back to the OS only 1 s after it was freed, and only when a
    // thread next allocates: after a burst of large bodies the process stayed hundreds of MiB
    // above what it held, and peaks stacked up past the ingestion memory budget. Purging at
    // once keeps RSS close to what is live (`MIMALLOC_PURGE_DELAY` still overrides).
    // SAFETY: sets a process-wide option before any thread exists; mimalloc reads it per call.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STACKHOUND_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = stackhound::cli::Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(stackhound::cli::run(cli))
}
