"""Threads for the tests: run targets at once, re-raise what failed in one, never hang."""
import threading

TIMEOUT = 10.0  # seconds any thread waits for another before the test calls it a deadlock


def wait(event):
    """Block until another thread reaches its step of the choreography; fail, never hang."""
    if not event.wait(TIMEOUT):
        raise TimeoutError("the other thread never reached its step (deadlock?)")


def run_in_threads(*targets, events=(), barriers=()):
    """Run each target in a thread of its own and join them all with a timeout.

    A thread's exception is re-raised here (left alone it would only be a pytest warning).
    When one thread fails, the events and barriers are released so the others do not wait
    out the timeout for a signal that will never come; the first failure is the one raised.
    """
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)
            for event in events:
                event.set()
            for barrier in barriers:
                barrier.abort()

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"threads {hung} still running after {TIMEOUT} s: deadlock"
    if errors:
        raise errors[0]
