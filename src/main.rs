//! The `pipe` executable: the command line of [`pipe::cli`] with the built-in plugins.

fn main() {
    pipe::cli::exit(pipe::cli::main());
}
