package io.walletledger.client;

import io.grpc.Channel;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A server stream that survives disconnects: after a resumable failure (UNAVAILABLE, ABORTED
 * such as WATCH_LAGGED, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN, or the
 * stream ending early) it waits a backoff (100 ms doubling to 2 s, the Rust SDK's) and calls
 * again on the next endpoint with a request built from what it already delivered, dropping
 * anything already delivered. A definite failure ends it with a {@link WalletException}.
 * {@link #close()} (from any thread) ends it: {@code hasNext()} then answers false.
 */
public abstract class ResumingStream<T> implements Iterator<T>, AutoCloseable {
  static final Duration RESUME_BACKOFF_MIN = Duration.ofMillis(100);
  static final Duration RESUME_BACKOFF_MAX = Duration.ofSeconds(2);

  private final List<String> endpoints;
  private final Function<String, Channel> channels;
  private final int resumesMax;
  private volatile Context.CancellableContext context;
  private volatile boolean closed;
  private final CountDownLatch closedLatch = new CountDownLatch(1);
  private Iterator<T> current;
  private T next;
  private boolean finished;
  private int attempt;
  private int failuresInARow;
  private Duration backoff = RESUME_BACKOFF_MIN;
  private long resumes;

  /**
   * @param resumesMax consecutive failed (re)connections without an update in between after
   *     which the stream gives up with the last error (0: never give up)
   */
  protected ResumingStream(List<String> endpoints, Function<String, Channel> channels, int resumesMax) {
    this.endpoints = endpoints;
    this.channels = channels;
    this.resumesMax = resumesMax;
  }

  /** Opens the stream on {@code channel}, asking for what comes after what was delivered. */
  protected abstract Iterator<T> open(Channel channel);

  /** Records {@code item} as delivered; false if it was delivered already (dropped). */
  protected abstract boolean accept(T item);

  /** True when {@code item} is the last one (the server ends the stream after it). */
  protected boolean isLast(T item) {
    return false;
  }

  /** How many times the stream reconnected after a failure. */
  public synchronized long resumes() {
    return resumes;
  }

  @Override
  public synchronized boolean hasNext() {
    if (next != null) {
      return true;
    }
    while (!finished) {
      if (closed) {
        finish();
        return false;
      }
      Throwable failure;
      try {
        if (current == null) {
          Context.CancellableContext ctx = Context.current().withCancellation();
          context = ctx;
          if (closed) {
            continue;
          }
          Channel channel = channels.apply(endpoints.get(attempt % endpoints.size()));
          current = ctx.call(() -> open(channel));
        }
        if (current.hasNext()) {
          T item = current.next();
          failuresInARow = 0;
          backoff = RESUME_BACKOFF_MIN;
          if (!accept(item)) {
            continue;
          }
          if (isLast(item)) {
            finish();
          }
          next = item;
          return true;
        }
        failure = Status.UNAVAILABLE.withDescription("the node ended the stream").asRuntimeException();
      } catch (StatusRuntimeException e) {
        failure = e;
      } catch (Exception e) {
        failure = e;
      }
      dropCurrent();
      if (closed) {
        finish();
        return false;
      }
      failuresInARow++;
      if (!resumable(failure) || (resumesMax > 0 && failuresInARow > resumesMax)) {
        finish();
        throw Errors.classify(failure);
      }
      attempt++;
      resumes++;
      try {
        if (closedLatch.await(backoff.toMillis(), TimeUnit.MILLISECONDS)) {
          continue; // closed while waiting
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        finish();
        throw Errors.classify(e);
      }
      backoff = backoff.multipliedBy(2);
      if (backoff.compareTo(RESUME_BACKOFF_MAX) > 0) {
        backoff = RESUME_BACKOFF_MAX;
      }
    }
    return false;
  }

  @Override
  public synchronized T next() {
    if (!hasNext()) {
      throw new NoSuchElementException();
    }
    T item = next;
    next = null;
    return item;
  }

  /** Ends the stream (safe from any thread, also while another blocks in {@code hasNext}). */
  @Override
  public void close() {
    closed = true;
    closedLatch.countDown();
    Context.CancellableContext ctx = context;
    if (ctx != null) {
      ctx.cancel(null);
    }
  }

  /** Pumps every item to {@code onItem} on a daemon thread; {@code onError} gets a failure. */
  Thread pump(String name, Consumer<? super T> onItem, Consumer<? super WalletException> onError) {
    Thread thread = new Thread(() -> {
      try {
        while (hasNext()) {
          onItem.accept(next());
        }
      } catch (WalletException e) {
        if (onError != null) {
          onError.accept(e);
        }
      }
    }, name);
    thread.setDaemon(true);
    thread.start();
    return thread;
  }

  private void finish() {
    finished = true;
    dropCurrent();
  }

  private void dropCurrent() {
    current = null;
    Context.CancellableContext ctx = context;
    if (ctx != null) {
      ctx.cancel(null);
    }
  }

  /**
   * Failures after which the same request may succeed later or on another node: unreachable
   * or restarting, cut off for lagging (ABORTED), at its stream limit, or timed out.
   */
  static boolean resumable(Throwable failure) {
    if (failure instanceof InterruptedException) {
      return false;
    }
    switch (Status.fromThrowable(failure).getCode()) {
      case UNAVAILABLE:
      case ABORTED:
      case RESOURCE_EXHAUSTED:
      case DEADLINE_EXCEEDED:
      case CANCELLED:
      case UNKNOWN:
        return true;
      default:
        return false;
    }
  }
}
