use clap::Parser;

fn main() {
    let cli = kuberay::cli::Cli::parse();
    let code = kuberay::cli::run(cli, &mut std::io::stdout().lock(), &mut std::io::stderr().lock());
    std::process::exit(code);
}
