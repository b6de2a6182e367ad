//! `netagent`: the per-host node agent. See the crate documentation of `agent` and the README.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::config::{AgentConfig, ConfigError, EXIT_CONFIG, LogFormat, RunArgs};
use clap::{Parser, Subcommand};

/// netagent: the per-host agent of a multi-host container network control plane
/// (SWIM membership, NetworkDB replication, libnetwork-compatible diagnostics).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The agent's control API, for the network, endpoint, sandbox and info commands:
    /// unix:/PATH or /PATH, tcp:IP:PORT or IP:PORT [default: the default of netagent run].
    #[arg(long, env = "NETAGENT_API", value_name = "ADDR")]
    api: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent (configuration from --config, flags and NETAGENT_* variables).
    Run(Box<RunArgs>),
    /// Start three agents on loopback in this process and show entries converging; as root,
    /// also ping between containers on three simulated hosts across a real VXLAN overlay.
    Demo,
    /// Make a cluster CA, node certificates and a gossip key.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Print an example configuration file with every field and its default.
    ExampleConfig,
    #[command(flatten)]
    Control(agent::cli::ControlCommand),
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Write ca.pem, ca-key.pem, NAME.pem, NAME-key.pem per node and gossip.key into DIR.
    Init {
        /// Output directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node names (each becomes a certificate's DNS name and must be the node's --name).
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let config = match AgentConfig::load(&args) {
                Ok(c) => c,
                // A refused NETAGENT_* value is reported as clap reports a refused flag.
                Err(ConfigError::Env(e)) => e.exit(),
                Err(e) => {
                    eprintln!("netagent: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            init_logging(&config);
            match runtime().block_on(agent::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                // Key and certificate files are read at start: a bad one is a bad
                // configuration too.
                Err(e @ agent::daemon::DaemonError::Config(_)) => {
                    eprintln!("netagent: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
                Err(e) => {
                    eprintln!("netagent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo => match runtime().block_on(agent::demo::run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netagent: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Pki {
            command: PkiCommand::Init { dir, names },
        } => {
            let made = agent::pki::ClusterCa::generate("netagent cluster CA")
                .and_then(|ca| ca.write_bundle(&dir, &names));
            match made {
                Ok(()) => {
                    println!(
                        "wrote ca.pem, ca-key.pem, gossip.key and a certificate pair per node to {}",
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("netagent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ExampleConfig => {
            print!("{}", agent::config::example_toml());
            ExitCode::SUCCESS
        }
        Command::Control(command) => {
            ExitCode::from(client_runtime().block_on(agent::cli::run(cli.api, command)))
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    build(tokio::runtime::Builder::new_multi_thread())
}

/// A single-threaded runtime for the control-API commands (one request at a time).
fn client_runtime() -> tokio::runtime::Runtime {
    build(tokio::runtime::Builder::new_current_thread())
}

/// The runtime with I/O and timers, or exit status 1.
fn build(mut builder: tokio::runtime::Builder) -> tokio::runtime::Runtime {
    match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netagent: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn init_logging(config: &AgentConfig) {
    // hickory logs every DNS request at info: quiet unless the filter names it.
    let directive = if config.log_level.contains("hickory") {
        config.log_level.clone()
    } else {
        format!(
            "{},hickory_server=warn,hickory_proto=warn",
            config.log_level
        )
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
