//! The verbs of containers that run: `logs`, `exec`, `attach`, `start`, `stop`, `restart`,
//! `kill`, `wait`, `pause`, `unpause`, `top`. Parsing only: the work is in
//! [`crate::image::lifecycle`]. They set their own exit status (`exec`, `attach` and
//! `start -a` pass the container's on), so [`Verb::run`] returns an `ExitCode`.

use crate::image::lifecycle::attach::{self, Ended};
use crate::image::lifecycle::exec::{self, ExecOptions};
use crate::image::lifecycle::logs::{self, LogOptions};
use crate::image::lifecycle::{control, state};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Verb {
    /// Show what a container wrote (stdout and stderr, kept by its monitor)
    Logs(LogsArgs),
    /// Run a command in a running container
    #[command(override_usage = "unionrs exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
    Exec(ExecArgs),
    /// Attach to a running container's terminal or output (detach: ctrl-p ctrl-q)
    Attach(ContainerArg),
    /// Start stopped containers
    Start(StartArgs),
    /// Stop running containers: the stop signal, then SIGKILL after a grace period
    Stop(StopArgs),
    /// Stop and start containers
    Restart(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Wait until containers stop; print their exit statuses
    Wait(ContainersArg),
    /// Freeze every process of containers
    Pause(ContainersArg),
    /// Thaw paused containers
    Unpause(ContainersArg),
    /// Show a container's processes
    Top(TopArgs),
}

#[derive(Args)]
pub struct ContainerArg {
    #[arg(value_name = "CONTAINER")]
    name: String,
}

#[derive(Args)]
pub struct ContainersArg {
    #[arg(value_name = "CONTAINER", required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Keep writing what comes until the container stops
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (or all)
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<String>,
    /// Show each line's time
    #[arg(short, long)]
    timestamps: bool,
    #[arg(value_name = "CONTAINER")]
    name: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Start it and return at once
    #[arg(short, long)]
    detach: bool,
    /// Our stdin goes to the command
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY: ours); may repeat
    #[arg(short, long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The command's working directory
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Run as USER[:GROUP] (names from the container or numbers)
    #[arg(short, long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// The container, then the command and its arguments, passed as they are
    #[arg(
        value_names = ["CONTAINER", "COMMAND"],
        required = true,
        num_args = 2..,
        trailing_var_arg = true
    )]
    container_and_command: Vec<String>,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach to it (one container), and exit with its status when it stops
    #[arg(short, long)]
    attach: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait for it to stop before SIGKILL
    #[arg(short, long, value_name = "SECS", default_value_t = 10)]
    time: u64,
    #[arg(value_name = "CONTAINER", required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// The signal (KILL, SIGTERM, 15, ...)
    #[arg(short, long, value_name = "SIGNAL", default_value = "KILL")]
    signal: String,
    #[arg(value_name = "CONTAINER", required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    name: String,
    /// ps(1) options (default: -ef)
    #[arg(
        value_name = "PS_OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    ps_options: Vec<String>,
}

/// A failure: what went wrong, and the exit status (1; exec's own failures 125, as docker's).
struct Failed(String, u8);

impl From<String> for Failed {
    fn from(m: String) -> Failed {
        Failed(m, 1)
    }
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Logs(_) => "logs",
            Verb::Exec(_) => "exec",
            Verb::Attach(_) => "attach",
            Verb::Start(_) => "start",
            Verb::Stop(_) => "stop",
            Verb::Restart(_) => "restart",
            Verb::Kill(_) => "kill",
            Verb::Wait(_) => "wait",
            Verb::Pause(_) => "pause",
            Verb::Unpause(_) => "unpause",
            Verb::Top(_) => "top",
        }
    }

    pub fn run(self, store: Option<PathBuf>) -> ExitCode {
        let verb = self.name();
        let r = crate::image::store::default_root(store.as_deref())
            .map_err(Failed::from)
            .and_then(|root| self.run_in(&root));
        match r {
            Ok(code) => code,
            Err(Failed(m, code)) if verb == "exec" && code == 1 => {
                eprintln!("unionrs: {m}");
                ExitCode::from(125)
            }
            Err(Failed(m, code)) => {
                eprintln!("unionrs: {m}");
                ExitCode::from(code)
            }
        }
    }

    fn run_in(self, root: &Path) -> Result<ExitCode, Failed> {
        match self {
            Verb::Logs(a) => {
                let tail =
                    match a.tail.as_deref() {
                        None | Some("all") => None,
                        Some(n) => Some(n.parse().map_err(|_| {
                            Failed(format!("logs: --tail {n:?}: a number or all"), 2)
                        })?),
                    };
                let o = LogOptions {
                    follow: a.follow,
                    tail,
                    timestamps: a.timestamps,
                };
                let f = control::find(root, &a.name)?;
                let dir = f.dir.clone();
                let mut done = || !state::status(&dir).is_running();
                logs::show(
                    &logs::path(&f.dir),
                    &o,
                    &mut done,
                    &mut std::io::stdout().lock(),
                    &mut std::io::stderr().lock(),
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Verb::Exec(a) => {
                let mut words = a.container_and_command.into_iter();
                let what = words.next().unwrap_or_default();
                let o = ExecOptions {
                    detach: a.detach,
                    interactive: a.interactive,
                    tty: a.tty,
                    env: a.env,
                    workdir: a.workdir,
                    user: a.user,
                    command: words.collect(),
                };
                let code = exec::exec(root, &what, &o)?;
                Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
            }
            Verb::Attach(a) => attach_to(root, &a.name),
            Verb::Start(a) if a.attach => {
                let [what] = a.names.as_slice() else {
                    return Err(Failed("start: -a takes one container".into(), 2));
                };
                control::start(root, what)?;
                attach_to(root, what)
            }
            Verb::Start(a) => each(&a.names, |w| control::start(root, w).map(drop)),
            Verb::Stop(a) => each(&a.names, |w| {
                control::stop(root, w, Duration::from_secs(a.time)).map(drop)
            }),
            Verb::Restart(a) => each(&a.names, |w| {
                control::stop(root, w, Duration::from_secs(a.time))?;
                control::start(root, w).map(drop)
            }),
            Verb::Kill(a) => each(&a.names, |w| control::kill(root, w, &a.signal).map(drop)),
            Verb::Pause(a) => each(&a.names, |w| control::pause(root, w, true).map(drop)),
            Verb::Unpause(a) => each(&a.names, |w| control::pause(root, w, false).map(drop)),
            Verb::Wait(a) => {
                for w in &a.names {
                    println!("{}", control::wait(root, w)?);
                }
                Ok(ExitCode::SUCCESS)
            }
            Verb::Top(a) => {
                print!("{}", control::top(root, &a.name, &a.ps_options)?);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Runs `f` on each container, printing its name as docker does.
fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> Result<(), String>,
) -> Result<ExitCode, Failed> {
    for w in names {
        f(w)?;
        println!("{w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Attaches to a running container; the container's exit status when it stops, 0 when
/// detached.
fn attach_to(root: &Path, what: &str) -> Result<ExitCode, Failed> {
    let f = control::find(root, what)?;
    if !state::status(&f.dir).is_running() {
        return Err(format!("container {} is not running", f.c.name).into());
    }
    match attach::attach(&attach::socket_path(&f.c.id))? {
        Ended::Detached => Ok(ExitCode::SUCCESS),
        Ended::Stopped => {
            let code = control::wait(root, what)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
    }
}
