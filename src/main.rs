fn main() {
    println!("unionrs: being written");
}
