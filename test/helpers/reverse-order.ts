/**
 * Loaded with `mocha --require`, runs the tests of every suite, and the suites themselves, in
 * reverse order. A test that passes only after another has run (state one leaves for the next)
 * fails this way; test/isolation.sh uses it with --tests-reversed.
 */
import Mocha from 'mocha';

const runner = Mocha.Runner.prototype;
const { run } = runner as {
  run: (this: Mocha.Runner, ...args: Parameters<Mocha.Runner['run']>) => Mocha.Runner;
};

function reverse(suite: Mocha.Suite): void {
  suite.tests.reverse();
  suite.suites.reverse();
  suite.suites.forEach(reverse);
}

runner.run = function (this: Mocha.Runner, ...args: Parameters<Mocha.Runner['run']>) {
  reverse(this.suite);
  return run.apply(this, args);
};
