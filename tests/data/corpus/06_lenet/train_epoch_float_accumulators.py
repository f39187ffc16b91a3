# cell: train_epoch
# item: 1
# fair: full
def train_epoch(net, train_iter, loss, optimizer, device):
    # float(...) needs data: on the meta device this stops after the first batch, which is inconclusive
    net.train()
    metric = [0.0, 0.0, 0]
    for X, y in train_iter:
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        l = loss(y_hat, y)
        optimizer.zero_grad()
        l.backward()
        optimizer.step()
        metric[0] += float(l) * len(y)
        metric[1] += float((y_hat.argmax(axis=1) == y).sum())
        metric[2] += len(y)
    return metric[0] / metric[2], metric[1] / metric[2]
