// For the bench's child processes: never outlive the bench that started them (it may have been
// SIGKILLed, and a server or load left running would skew the next run).

/** Exits (code 3) once the parent process is gone. */
export function exitWithParent() {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(3);
  }, 1000).unref();
}
