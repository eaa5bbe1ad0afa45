package testenv

import "sync"

// Load runs a request function from several goroutines, over and over,
// until Stop; fault tests use it to break something under load.
type Load[T any] struct {
	stopped chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []T
}

// maxLoadIterations bounds each worker, whatever happens.
const maxLoadIterations = 100_000

// StartLoad starts workers goroutines; worker w calls do(w, i) for
// i = w, w+1, ... until Stop, keeping every result.
func StartLoad[T any](workers int, do func(worker, i int) T) *Load[T] {
	l := &Load[T]{stopped: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var mine []T
			defer func() {
				l.mu.Lock()
				l.results = append(l.results, mine...)
				l.mu.Unlock()
			}()
			for i := w; i < w+maxLoadIterations; i++ {
				select {
				case <-l.stopped:
					return
				default:
				}
				mine = append(mine, do(w, i))
			}
		}()
	}
	return l
}

// Stop stops the workers and returns every result. It may be called more
// than once.
func (l *Load[T]) Stop() []T {
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results
}
