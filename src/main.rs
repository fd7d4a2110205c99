//! The `pipe` executable: the command line of [`pipe::cli`] with the built-in plugins.

// Planning and deciding 100,000 instances is mostly small allocations, where glibc's allocator
// spent a third of the time (`make bench`, scale section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    pipe::cli::exit(pipe::cli::main());
}
