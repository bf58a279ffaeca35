//! `cargo run -p agentkeys-hostd-xtask -- assets DIR`: writes the man page and the bash/zsh
//! completions generated from the real command line definition, for the .deb to ship.

use std::path::PathBuf;

use clap::CommandFactory;

/// Sections clap does not generate: exit codes and files (spec §§4, 10).
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
0
converged (with or without changes)
.TP
1
an apply or health failure (the report names the unit and its journal tail)
.TP
2
invalid input or usage (the message names the flag, key or file:line)
.TP
3
identity conflict: a cross-wired re-deploy was refused
.TP
75
another converge held the lock past the wait limit
.SH FILES
.TP
/etc/agentkeys/hostd.toml, /etc/agentkeys/hostd.d/*.toml
configuration (drop-ins override key by key)
.TP
/etc/agentkeys/templates/*.tera
operator overrides of the unit, env-file and vhost templates
.TP
/var/lib/agentkeys-hostd/
state, run report, ACME account, failure ledger and certificates
.TP
/run/agentkeys-hostd/daemon.json
the running daemon's record (read by status)
.SH "SEE ALSO"
agentkeys-hostd-reconcile(1), agentkeys-hostd-daemon(1), agentkeys-hostd-status(1), systemd.service(5), nginx(8)
"#;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(cmd), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: agentkeys-hostd-xtask assets DIR");
        std::process::exit(2);
    };
    if cmd != "assets" {
        eprintln!("unknown command {cmd}; usage: agentkeys-hostd-xtask assets DIR");
        std::process::exit(2);
    }
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    // Start clean: a page of a removed subcommand must not linger in the package.
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            std::fs::remove_file(path)?;
        }
    }
    let mut command = hostd::cli::Cli::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut man)?;
    man.extend_from_slice(EXTRA.as_bytes());
    std::fs::write(dir.join("agentkeys-hostd.1"), man)?;
    command.build();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("agentkeys-hostd-{}", sub.get_name());
        let page = sub.clone().display_name(name.clone()).bin_name(format!("agentkeys-hostd {}", sub.get_name()));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    for (shell, file) in
        [(clap_complete::Shell::Bash, "agentkeys-hostd.bash"), (clap_complete::Shell::Zsh, "_agentkeys-hostd")]
    {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "agentkeys-hostd", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    println!("wrote the man page and completions to {}", dir.display());
    Ok(())
}
