/** Entry point of the dashboard bundle (scripts/build-dashboard.mjs). */
import { render } from 'preact';
import { App } from './app.js';
import { html } from './html.js';
import { Store } from './store.js';

const store = new Store();
const root = document.getElementById('app');
if (root !== null) {
  root.textContent = '';
  render(html`<${App} store=${store} />`, root);
  store.start();
}
